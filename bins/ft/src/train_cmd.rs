//! `ft train CONFIG.toml [--resume [DIR]]`: fine-tune a model as the config says.

use ft_model::KernelBackend;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::backend::Backend;
use clap::Args;
use ft_data::cache::CachedDataset;
use ft_data::dataset::resolve_template;
use ft_data::rows::RowSource;
use ft_data::tokenizer::FtTokenizer;
use ft_model::adapters::attach_new_lora;
use ft_model::families::linear_names;
use ft_train::checkpoint::latest_checkpoint;
use ft_train::config::{self, TrainConfig};
use ft_train::eval_hook::ChatEvalHook;

use crate::train_progress::{TrainBar, WithProgress};
use ft_train::eval_loss::EvalLossHook;
use ft_train::parallel::{NodePlace, train_parallel};
use ft_train::trainer::{TrainSetup, train};

use crate::backend::{BackendPeersTask, DType, DeviceKind, dispatch_peers};
use crate::data_cache::open_or_build_with_progress;
use crate::model_load::{Quantization, load_model_quantized};

/// Arguments of `ft train`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// The training config (TOML).
    pub config: PathBuf,
    /// Continue from a checkpoint folder (no value: the newest in `output_dir`).
    #[arg(long, value_name = "DIR")]
    #[allow(clippy::option_option)]
    pub resume: Option<Option<PathBuf>>,
    /// Device (default: `[train] device`).
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
    /// Compute dtype of the frozen base (default: `[model] dtype`).
    #[arg(long, value_enum)]
    pub dtype: Option<DType>,
    /// Data parallelism on this node: one peer per device, `cuda:0,cuda:1,...` or `cpu:N`
    /// (default: `[train] devices`, else one peer on `--device`).
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// Nodes (machines) in the run; each runs this command with its own `--node-rank`.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nnodes: u32,
    /// This node's rank, 0..nnodes (node 0 starts the orchestrator at `--master`).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub node_rank: u32,
    /// Where node 0's orchestrator listens, `HOST:PORT`; needed with `--nnodes` > 1. Each node
    /// also serves its tensors on PORT + 1 + its rank.
    #[arg(long, value_name = "HOST:PORT")]
    pub master: Option<String>,
}

struct TrainTask {
    config: TrainConfig,
    resume: Option<Option<PathBuf>>,
    node: Option<NodePlace>,
}

impl BackendPeersTask for TrainTask {
    type Output = ();

    fn run<B: KernelBackend>(self, devices: Vec<B::Device>, label: &str) -> anyhow::Result<()> {
        type A<B> = Autodiff<B>;
        let config = self.config;
        let device = devices[0].clone();
        let mut loaded = load_replica::<A<B>>(&config, &device)?;
        let template = resolve_template(&config.data, &loaded.tokenizer)?;
        ft_train::checkpoint::ensure_writable(&config.train.output_dir)?;
        let data = match &config.llava {
            Some(_) => in_memory_data(&config, &loaded.tokenizer, &template)?,
            None => cached_data(&config, &loaded.tokenizer, &template)?,
        };
        let s = &data.stats;
        if s.pictures > 0 && config.llava.is_none() {
            let files: Vec<String> = config
                .data
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            anyhow::bail!(
                "{}: {} samples hold a picture (LLaVA data); train them with a `[llava]` section",
                files.join(", "),
                s.pictures
            );
        }
        let peers = match devices.len() {
            1 => String::new(),
            n => format!(" × {n} peers"),
        };
        tracing::info!(
            "data: {} samples ({} dropped, {} truncated, {} held out, {} with a picture), {} rows, {} trained tokens; template {}; device {label}{peers}",
            s.samples,
            s.dropped_unsupervised,
            s.truncated,
            data.eval.len(),
            s.pictures,
            s.rows,
            s.supervised_tokens,
            template.name()
        );
        let rendered_example = data.first_sample.as_ref().and_then(|ids| {
            let ids: Vec<u32> = ids.iter().filter(|&&i| i >= 0).map(|&i| i as u32).collect();
            loaded.tokenizer.decode(&ids, false).ok()
        });
        let base_files = match (&config.lora, &config.llava) {
            (None, None) => Some(crate::gguf_side_files::base_files(
                &config.model.path,
                &loaded.tokenizer,
            )?),
            _ => None,
        };
        let resume_from = match self.resume {
            None => None,
            Some(None) => Some(latest_checkpoint(&config.train.output_dir)?.with_context(|| {
                format!("no checkpoint to resume in {}", config.train.output_dir.display())
            })?),
            Some(Some(p)) => Some(p),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to abort)");
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        }) {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        let bar = TrainBar::new();
        let chat = ChatEvalHook::new(
            config.eval.clone(),
            template.clone(),
            loaded.tokenizer.clone(),
            config.train.output_dir.clone(),
        )
        .with_answers_callback(bar.answers_printer());
        let mut hooks = WithProgress {
            bar,
            inner: EvalLossHook::new(chat, data.eval).with_pictures(data.eval_pictures),
        };
        let rows: Arc<dyn RowSource> = Arc::from(data.rows);
        let mut setups = Vec::with_capacity(devices.len());
        for (i, device) in devices.into_iter().enumerate() {
            if i > 0 {
                loaded = load_replica::<A<B>>(&config, &device)?;
            }
            A::<B>::seed(&device, config.train.seed);
            let targets = make_trainable(&config, &mut loaded, i == 0)?;
            let llava = match &config.llava {
                Some(section) => Some(llava_training::<A<B>>(
                    &config,
                    section,
                    &loaded.config,
                    data.pictures.clone(),
                    &device,
                )?),
                None => None,
            };
            setups.push(TrainSetup {
                linear_names: linear_names(&loaded.config),
                model: loaded.model.clone(),
                model_config: loaded.config.clone(),
                rows: Box::new(rows.clone()),
                targets,
                template_name: template.name().to_owned(),
                rendered_example: rendered_example.clone(),
                device,
                resume_from: resume_from.clone(),
                stop: stop.clone(),
                base_files: base_files.clone(),
                llava,
                config: config.clone(),
            });
        }
        drop(loaded);
        let lora_run = config.lora.is_some();
        let outcome = match (setups.len(), &self.node) {
            (1, None) => train(setups.pop().expect("invariant: one setup"), &mut hooks)?,
            _ => train_parallel(setups, &mut hooks, self.node.as_ref())?,
        };
        if outcome.interrupted {
            eprintln!(
                "stopped at step {}; resume with --resume {}",
                outcome.steps,
                outcome.saved.display()
            );
        } else {
            let what = if lora_run { "adapter" } else { "model" };
            eprintln!(
                "done: {} steps; {what} in {}",
                outcome.steps,
                outcome.saved.display()
            );
        }
        Ok(())
    }
}

/// The base model on `device`, quantised as `[model]` says.
fn load_replica<B: KernelBackend>(
    config: &TrainConfig,
    device: &B::Device,
) -> anyhow::Result<crate::model_load::LoadedModel<B>> {
    let quantization = match config.model.quantization.as_str() {
        "nf4" => Quantization::Nf4,
        _ => Quantization::None,
    };
    load_model_quantized::<B>(
        &config.model.path,
        device,
        quantization,
        config.model.double_quant,
    )
}

/// Makes the run's tensors trainable: fresh seeded adapters (`[lora]`), nothing (LLaVA stage 1:
/// the projector trains) or every weight (full fine-tuning). Returns the adapted module names;
/// `describe` logs what was done (once per run, not per peer).
fn make_trainable<B: ft_model::TrainBackend>(
    config: &TrainConfig,
    loaded: &mut crate::model_load::LoadedModel<B>,
    describe: bool,
) -> anyhow::Result<Vec<String>> {
    let chosen = match &config.lora {
        Some(lora) => {
            let chosen = attach_new_lora(
                &mut loaded.model,
                &loaded.config,
                lora.spec(),
                &lora.targets(),
                config.train.seed,
            )?;
            if describe {
                tracing::info!(
                    "LoRA r={} alpha={} on {} modules",
                    lora.r,
                    lora.alpha,
                    chosen.len()
                );
            }
            chosen
        }
        None if config.llava.is_some() => {
            ft_model::adapters::freeze_all(&mut loaded.model);
            if describe {
                tracing::info!("LLaVA stage 1: the LLM and CLIP are frozen, the projector trains");
            }
            Vec::new()
        }
        None => {
            if describe {
                let count: usize = loaded.model.num_params();
                tracing::info!("full fine-tuning: {count} parameters");
            }
            Vec::new()
        }
    };
    Ok(chosen)
}

/// A run's training and held-out rows, statistics, and (LLaVA) each training row's picture.
struct RunData {
    rows: Box<dyn RowSource>,
    eval: Box<dyn RowSource>,
    stats: ft_data::dataset::DatasetStats,
    first_sample: Option<Vec<i32>>,
    pictures: Vec<Option<String>>,
    eval_pictures: Vec<Option<String>>,
}

/// Rows over the token cache (built or reused).
fn cached_data(
    config: &TrainConfig,
    tokenizer: &FtTokenizer,
    template: &ft_data::template::Template,
) -> anyhow::Result<RunData> {
    let (cache, _) =
        open_or_build_with_progress(&config.cache_dir(), &config.data, tokenizer, template, false)?;
    let dataset = CachedDataset::new(cache, &config.data);
    let first_sample = (!dataset.cache.is_empty()).then(|| dataset.cache.sample(0).input_ids);
    Ok(RunData {
        stats: dataset.stats.clone(),
        first_sample,
        pictures: Vec::new(),
        eval_pictures: Vec::new(),
        rows: Box::new(dataset.rows),
        eval: Box::new(dataset.eval),
    })
}

/// Rows prepared in memory, one per sample, each with its picture (LLaVA: the token cache does
/// not hold pictures).
fn in_memory_data(
    config: &TrainConfig,
    tokenizer: &FtTokenizer,
    template: &ft_data::template::Template,
) -> anyhow::Result<RunData> {
    let mut prepared = ft_data::dataset::prepare(&config.data, tokenizer, template)?;
    check_pictures(config, &mut prepared)?;
    let pictures = prepared
        .train
        .iter()
        .map(|&i| prepared.samples[i].image.clone())
        .collect();
    let first_sample = prepared.samples.first().map(|s| s.encoded.input_ids.clone());
    let held_out = prepared.eval.iter().map(|&i| &prepared.samples[i]);
    let eval: Vec<ft_data::pack::PackedRow> = held_out
        .clone()
        .map(|s| ft_data::pack::PackedRow::single(&s.encoded))
        .collect();
    Ok(RunData {
        stats: prepared.stats,
        first_sample,
        pictures,
        eval_pictures: held_out.map(|s| s.image.clone()).collect(),
        rows: Box::new(prepared.rows),
        eval: Box::new(eval),
    })
}

/// Checks before training that every picture of the training and held-out samples can be read
/// (the file exists, its header decodes); a bad one is an error naming the record, or, with
/// `skip_bad_records`, its sample is dropped with a warning.
fn check_pictures(
    config: &TrainConfig,
    prepared: &mut ft_data::dataset::PreparedDataset,
) -> anyhow::Result<()> {
    let folder = config.data.image_folder.as_deref();
    let readable = |sample: &ft_data::dataset::Sample| -> anyhow::Result<bool> {
        let Some(image) = &sample.image else {
            return Ok(true);
        };
        let checked = ft_llava::pictures::picture_path(folder, image)
            .map_err(|e| anyhow::anyhow!("{e}; set `[data] image_folder`"))
            .and_then(|path| Ok(ft_llava::check_picture(&path)?));
        match checked {
            Ok(()) => Ok(true),
            Err(e) if config.data.skip_bad_records => {
                tracing::warn!("{}: skipped: {e}", sample.origin);
                Ok(false)
            }
            Err(e) => Err(e.context(format!("the picture of {}", sample.origin))),
        }
    };
    let keep: Vec<bool> = prepared
        .train
        .iter()
        .map(|&i| readable(&prepared.samples[i]))
        .collect::<anyhow::Result<_>>()?;
    let rows = std::mem::take(&mut prepared.rows);
    let train = std::mem::take(&mut prepared.train);
    (prepared.rows, prepared.train) = rows
        .into_iter()
        .zip(train)
        .zip(&keep)
        .filter_map(|(pair, &kept)| kept.then_some(pair))
        .unzip();
    prepared.stats.rows = prepared.rows.len();
    let mut eval = Vec::with_capacity(prepared.eval.len());
    for &i in &prepared.eval {
        if readable(&prepared.samples[i])? {
            eval.push(i);
        }
    }
    prepared.eval = eval;
    Ok(())
}

/// CLIP (frozen) and the projector (from `[llava] projector`, else fresh and seeded) for a LLaVA
/// run.
fn llava_training<B: ft_model::TrainBackend>(
    config: &TrainConfig,
    section: &ft_train::config::LlavaSection,
    llm: &ft_model::ModelConfig,
    pictures: Vec<Option<String>>,
    device: &B::Device,
) -> anyhow::Result<ft_train::llava::LlavaTraining<B>> {
    let (clip, clip_config) = ft_llava::load_clip::<B>(&section.visual_encoder, device)?;
    let mut clip = clip.no_grad();
    let visual_nf4 = (section.visual_quantization == "nf4").then_some(config.model.double_quant);
    if let Some(double_quant) = visual_nf4 {
        clip.quantize_linears(double_quant)?;
        tracing::info!("CLIP's linear layers are NF4");
    }
    if let Some(lora) = &config.visual_lora {
        let adapted =
            ft_llava::attach_new_clip_lora(&mut clip, lora.spec(), &lora.targets(), config.train.seed)?;
        tracing::info!(
            "LoRA on CLIP: r={} alpha={} on {} layers",
            lora.r,
            lora.alpha,
            adapted.len()
        );
    }
    let (projector, projector_config) = match &section.projector {
        Some(dir) => ft_llava::load_projector::<B>(dir, device)?,
        None => {
            let mut shape = ft_llava::ProjectorConfig::new(clip_config.hidden_size, llm.hidden_size);
            shape.depth = section.projector_depth;
            (
                ft_llava::Projector::init(&shape, config.train.seed, device),
                shape,
            )
        }
    };
    let processor = if section.visual_encoder.join("preprocessor_config.json").exists() {
        ft_llava::ImageProcessor::from_dir(&section.visual_encoder)?
    } else {
        ft_llava::ImageProcessor::clip(clip_config.image_size as u32)
    };
    let vision = ft_llava::VisionSide::new(
        (clip, &clip_config),
        (projector, &projector_config),
        section.visual_select_layer,
        llm.hidden_size,
    )?;
    tracing::info!(
        "LLaVA: CLIP {} ({} layers, feature layer {}), projector {}",
        section.visual_encoder.display(),
        clip_config.num_hidden_layers,
        section.visual_select_layer,
        section
            .projector
            .as_ref()
            .map_or("fresh".to_owned(), |p| p.display().to_string())
    );
    Ok(ft_train::llava::LlavaTraining {
        vision,
        projector_config,
        picture_reader: ft_llava::PictureReader {
            processor,
            folder: config.data.image_folder.clone(),
            pad: section.pad_image_to_square.unwrap_or(config.lora.is_some()),
        },
        pictures,
        visual_lora: config.visual_lora.as_ref().map(|l| l.spec()),
        clip_key_prefix: clip_config.key_prefix.clone(),
        visual_encoder: section.visual_encoder.clone(),
        visual_nf4,
    })
}

/// Runs `ft train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = TrainConfig::from_file(&args.config)?;
    if config.data.eval_split > 0.0 && config.eval.is_none() {
        // The held-out loss is computed when the loop evaluates: every 500 steps and at the end.
        config.eval = Some(config::EvalSection::default());
    }
    let device = match args.device {
        Some(d) => d,
        None => match config.train.device.as_str() {
            "cuda" => DeviceKind::Cuda,
            "wgpu" => DeviceKind::Wgpu,
            "cpu" => DeviceKind::Cpu,
            _ => DeviceKind::Auto,
        },
    };
    if let Some(dtype) = args.dtype {
        // The override is part of the run's config (recorded with it, checked on resume).
        config.model.dtype = match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
        .into();
    }
    let dtype = match config.model.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        _ => DType::Bf16,
    };
    let listed = match &args.devices {
        Some(list) => vec![list.clone()],
        None => config.train.devices.clone(),
    };
    let peers =
        config::parse_devices(&listed).map_err(|m| anyhow::anyhow!("--devices / [train] devices: {m}"))?;
    let (device, indices) = match peers.first() {
        None => (device, vec![0]),
        Some(first) => (
            match first.kind {
                "cuda" => DeviceKind::Cuda,
                "wgpu" => DeviceKind::Wgpu,
                _ => DeviceKind::Cpu,
            },
            peers.iter().map(|p| p.index).collect(),
        ),
    };
    let node = node_place(&args, indices.len())?;
    dispatch_peers(
        device,
        dtype,
        &indices,
        TrainTask {
            config,
            resume: args.resume,
            node,
        },
    )
}

/// This node's place in a run over several nodes (`--nnodes`, `--node-rank`, `--master`); node 0
/// starts burn-collective's orchestrator. `None` for a one-node run.
fn node_place(args: &TrainArgs, local_peers: usize) -> anyhow::Result<Option<NodePlace>> {
    if args.nnodes <= 1 {
        return Ok(None);
    }
    anyhow::ensure!(
        args.node_rank < args.nnodes,
        "--node-rank {} is not below --nnodes {}",
        args.node_rank,
        args.nnodes
    );
    let master = args
        .master
        .as_deref()
        .context("--nnodes > 1 needs --master HOST:PORT (where node 0's orchestrator listens)")?;
    let (host, port) = master
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .with_context(|| format!("--master {master}: expected HOST:PORT"))?;
    let data_port = port
        .checked_add(1 + args.node_rank as u16)
        .context("--master's port leaves no room for the nodes' data ports")?;
    let own_host = own_address_towards(host, port)?;
    if args.node_rank == 0 {
        std::thread::Builder::new()
            .name("orchestrator".into())
            .spawn(
                move || match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                    Ok(runtime) => runtime.block_on(burn_collective::start_global_orchestrator(port)),
                    Err(e) => tracing::error!("the orchestrator could not start: {e}"),
                },
            )?;
    }
    let parse = |a: String| a.parse().map_err(|e| anyhow::anyhow!("address {a}: {e}"));
    let collective = burn_collective::CollectiveConfig::default()
        .with_num_nodes(args.nnodes)
        .with_global_address(parse(format!("ws://{host}:{port}"))?)
        .with_node_address(parse(format!("ws://{own_host}:{data_port}"))?)
        .with_data_service_port(data_port);
    tracing::info!(
        "node {} of {} ({local_peers} peers here); orchestrator ws://{host}:{port}; this node's data service ws://{own_host}:{data_port}",
        args.node_rank,
        args.nnodes
    );
    Ok(Some(NodePlace {
        nodes: args.nnodes,
        node_rank: args.node_rank,
        collective,
    }))
}

/// The address of this machine that the master reaches (the interface a packet to it would
/// leave by; nothing is sent).
fn own_address_towards(host: &str, port: u16) -> anyhow::Result<std::net::IpAddr> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("--master {host}:{port}: unknown host"))?
        .next()
        .with_context(|| format!("--master {host}:{port}: no address"))?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind)?;
    socket
        .connect(target)
        .with_context(|| format!("no route to --master {host}:{port}"))?;
    Ok(socket.local_addr()?.ip())
}
