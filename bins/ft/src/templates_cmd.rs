//! `ft templates`: the chat templates `ft` knows.

use clap::Args;
use ft_data::record::{Conversation, Turn};
use ft_data::template::{Segment, Template, builtin_templates};

/// Arguments of `ft templates`.
#[derive(Args)]
pub struct TemplatesArgs {
    /// Also print each template's rendering of a two-turn example.
    #[arg(long)]
    pub verbose: bool,
}

/// Lists the built-in templates (and `hf`).
pub fn run(args: TemplatesArgs) -> anyhow::Result<()> {
    for template in builtin_templates() {
        let stops = if template.stop_words.is_empty() {
            String::new()
        } else {
            format!("  stop: {}", template.stop_words.join(" "))
        };
        println!("{:<16}{}", template.name, stops);
        if args.verbose {
            let example = Conversation {
                conversation: vec![
                    Turn::new("Hi", "Hello!").with_system("You are helpful."),
                    Turn::new("2+2?", "4"),
                ],
                ..Default::default()
            };
            let rendered: String = Template::Prompt(template)
                .segments(&example, None)?
                .iter()
                .map(|s| match s {
                    Segment::Bos => "<BOS>".to_owned(),
                    Segment::Eos { .. } => "<EOS>".to_owned(),
                    Segment::Image => "<image>".to_owned(),
                    Segment::Prompt(t) | Segment::Sep(t) => t.clone(),
                    Segment::Answer { text, .. } => text.clone(),
                })
                .collect();
            println!("    {}", rendered.replace('\n', "\\n"));
        }
    }
    println!(
        "{:<16}the model's own chat_template (tokenizer_config.json), rendered with Jinja",
        "hf"
    );
    println!(
        "\nA path to a .toml file with `system`, `instruction`, `suffix`, `suffix_as_eos`, `sep`, `stop_words` also works."
    );
    Ok(())
}
