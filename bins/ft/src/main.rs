//! `ft`: fine-tune large language models.

fn main() -> anyhow::Result<()> {
    Ok(())
}
