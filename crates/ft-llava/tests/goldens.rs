//! The vision side against transformers (`fixtures/gen_llava.py`): pixel values of
//! `CLIPImageProcessor` (PIL backend) with and without XTuner's pad-to-square, every hidden
//! state of two CLIP towers (`quick_gelu` and `gelu`, two patch / image sizes), LLaVA features
//! from three folder layouts, and the projector's output.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_llava::{ClipVision, ImageProcessor, load_clip, load_pixels, load_projector};
use ft_model::weights::{HostTensor, SafetensorsSource, TensorSource};

type B = Flex;

const IMAGES: [&str; 5] = ["wide_rgb", "tall_rgba", "small_grey", "square_rgb", "palette"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llava")
}

fn golden() -> SafetensorsSource {
    let path = fixtures().join("golden.safetensors");
    SafetensorsSource::open_files(&path, std::slice::from_ref(&path)).unwrap()
}

fn read(golden: &SafetensorsSource, name: &str) -> HostTensor {
    golden.read(name).unwrap_or_else(|e| panic!("golden {name}: {e}"))
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

fn pixels_tensor(values: Vec<f32>, shape: [usize; 3]) -> Tensor<B, 4> {
    Tensor::from_data(
        TensorData::new(values, [1, shape[0], shape[1], shape[2]]),
        &Default::default(),
    )
}

#[test]
fn pixel_values_equal_the_pil_image_processor() {
    let golden = golden();
    for (tower, suffix) in [("clip-vision", ""), ("clip-gelu", ".gelu")] {
        let processor = ImageProcessor::from_dir(&fixtures().join(tower)).unwrap();
        for name in IMAGES {
            let path = fixtures().join("images").join(format!("{name}.png"));
            for (pad, key) in [(true, "pixels"), (false, "pixels_nopad")] {
                let (values, shape) = load_pixels(&path, &processor, pad).unwrap();
                let want = read(&golden, &format!("{key}{suffix}.{name}"));
                assert_eq!(shape.to_vec(), want.shape, "{tower} {name}");
                let diff = max_diff(&values, &want.data);
                assert!(diff < 1e-5, "{tower} {name} (pad {pad}): max |Δ| {diff}");
            }
            // transformers 5's default (torchvision) processor differs by up to one 8-bit level.
            let (values, _) = load_pixels(&path, &processor, true).unwrap();
            let tv = read(&golden, &format!("pixels_tv{suffix}.{name}"));
            assert!(
                max_diff(&values, &tv.data) < 0.02,
                "{tower} {name} vs torchvision"
            );
        }
    }
}

fn check_tower(dir: &str, tower: &str) {
    let golden = golden();
    let (model, config): (ClipVision<B>, _) = load_clip(&fixtures().join(dir), &Default::default()).unwrap();
    let suffix = if tower == "vision" { "" } else { ".gelu" };
    let index = config.hidden_state_index(-2).unwrap();
    for name in IMAGES {
        let pixels = read(&golden, &format!("pixels{suffix}.{name}"));
        let shape = [pixels.shape[0], pixels.shape[1], pixels.shape[2]];
        let states = model.hidden_states(
            pixels_tensor(pixels.data.clone(), shape),
            config.num_hidden_layers,
        );
        for (k, state) in states.into_iter().enumerate() {
            let want = read(&golden, &format!("hidden.{tower}.{name}.{k}"));
            let diff = max_diff(&host(state), &want.data);
            assert!(diff < 1e-4, "{dir} {name}: hidden state {k} max |Δ| {diff}");
        }
        let features = model.features(pixels_tensor(pixels.data, shape), index);
        assert_eq!(features.dims(), [1, config.patches(), config.hidden_size]);
        let want = read(&golden, &format!("features.{tower}.{name}"));
        let diff = max_diff(&host(features), &want.data);
        assert!(diff < 1e-4, "{dir} {name}: features max |Δ| {diff}");
    }
}

#[test]
fn a_clip_vision_model_matches_transformers_layer_by_layer() {
    check_tower("clip-vision", "vision");
}

#[test]
fn a_full_clip_model_folder_gives_the_same_tower() {
    check_tower("clip-full", "vision");
}

#[test]
fn an_hf_llava_folder_gives_the_same_tower() {
    check_tower("hf-llava", "vision");
}

#[test]
fn gelu_and_other_patch_and_picture_sizes_match_too() {
    check_tower("clip-gelu", "gelu");
}

#[test]
fn the_projector_matches_xtuners_projector_model() {
    let golden = golden();
    let (projector, config) =
        load_projector::<B>(&fixtures().join("projector"), &Default::default()).unwrap();
    assert_eq!(
        (config.visual_hidden_size, config.llm_hidden_size, config.depth),
        (32, 48, 2)
    );
    for name in IMAGES {
        let features = read(&golden, &format!("features.vision.{name}"));
        let [patches, hidden] = [features.shape[0], features.shape[1]];
        let input = Tensor::<B, 3>::from_data(
            TensorData::new(features.data, [1, patches, hidden]),
            &Default::default(),
        );
        let out = projector.forward(input);
        let want = read(&golden, &format!("projected.{name}"));
        let diff = max_diff(&host(out), &want.data);
        assert!(diff < 1e-4, "{name}: projector max |Δ| {diff}");
    }
}

#[test]
fn gif_and_webp_decode_to_the_pngs_pixels() {
    for (other, png) in [("palette.gif", "palette.png"), ("wide_rgb.webp", "wide_rgb.png")] {
        let images = fixtures().join("images");
        let a = ft_llava::load_rgb(&images.join(other)).unwrap();
        let b = ft_llava::load_rgb(&images.join(png)).unwrap();
        assert_eq!(a, b, "{other} decodes to the pixels of {png}");
    }
}

#[test]
fn exif_orientation_is_honoured() {
    // Stored 40 × 20, left red and right blue, with orientation 6 (rotate 90° clockwise).
    let image = ft_llava::load_rgb(&fixtures().join("images/exif_rot6.jpg")).unwrap();
    assert_eq!(image.dimensions(), (20, 40));
    let top = image.get_pixel(10, 3).0;
    let bottom = image.get_pixel(10, 36).0;
    assert!(top[0] > 180 && top[2] < 80, "top is red: {top:?}");
    assert!(bottom[2] > 180 && bottom[0] < 80, "bottom is blue: {bottom:?}");
}

#[test]
fn a_corrupt_or_missing_picture_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = ft_llava::load_rgb(&bad).unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");
    let err = ft_llava::load_rgb(&dir.path().join("absent.jpg"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.jpg"), "{err}");
}

#[test]
fn projector_folders_without_config_or_with_wrong_sizes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_projector::<B>(dir.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    for entry in std::fs::read_dir(fixtures().join("projector")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"llm_hidden_size\": 48", "\"llm_hidden_size\": 64");
    std::fs::write(&config, text).unwrap();
    let err = load_projector::<B>(dir.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.0.weight") && err.contains("[48, 32]"),
        "{err}"
    );
}

#[test]
fn a_saved_projector_loads_back_in_xtuners_layout() {
    use ft_llava::{Projector, ProjectorConfig, save_projector};
    let config = ProjectorConfig::new(32, 48);
    let device = Default::default();
    let fresh = Projector::<B>::init(&config, 7, &device);
    let again = Projector::<B>::init(&config, 7, &device);
    let other = Projector::<B>::init(&config, 8, &device);
    let weight = |p: &Projector<B>| host(p.layers[0].base_weight());
    assert_eq!(weight(&fresh), weight(&again), "seeded");
    assert_ne!(weight(&fresh), weight(&other));
    let bound = 1.0 / (32f32).sqrt();
    assert!(
        weight(&fresh).iter().all(|w| w.abs() <= bound),
        "nn.Linear's uniform bound"
    );

    let dir = tempfile::tempdir().unwrap();
    save_projector(&fresh, &config, dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(json["architectures"][0], "ProjectorModel");
    assert_eq!(
        (
            json["visual_hidden_size"].as_u64(),
            json["llm_hidden_size"].as_u64()
        ),
        (Some(32), Some(48))
    );
    let (loaded, loaded_config) = load_projector::<B>(dir.path(), &device).unwrap();
    assert_eq!(loaded_config, config);
    assert_eq!(weight(&loaded), weight(&fresh));
    let source = SafetensorsSource::open_dir(dir.path()).unwrap();
    let mut names = source.names();
    names.sort();
    assert_eq!(
        names,
        ["model.0.bias", "model.0.weight", "model.2.bias", "model.2.weight"]
    );
}
