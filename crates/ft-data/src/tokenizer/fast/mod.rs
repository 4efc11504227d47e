//! A fast path for the common pre-tokenizer configurations, exact by construction: the same
//! steps as the `tokenizers` pipeline, run over `&str` instead of `NormalizedString`s (no
//! alignment bookkeeping), lazily, so that nothing past the last needed piece is split.
//!
//! The library's order is kept: added tokens are split off ([`added`]), the text between them is
//! left to the normaliser (here: none, or Unicode normal forms the text is already in), the
//! pre-tokenizer splits it into pieces ([`steps`]), and the model turns each piece into tokens
//! (the library's own model). Splitting match by match over the real text gives the same pieces
//! as splitting it all, so stopping once `limit` ids are found is exact.
//!
//! A tokenizer with any other part (another pre-tokenizer or split behaviour, another normaliser)
//! has no fast path; [`FastPath::for_tokenizer`] returns `None` and the caller takes the library's
//! own steps.

mod added;
mod byte_level;
mod normal_form;
mod steps;

use tokenizers::models::ModelWrapper;
use tokenizers::{Model, Tokenizer};

use added::{AddedTokens, Part};
use normal_form::NormalForms;
use steps::Step;

/// Why a walk over a text stopped before its end.
pub enum Halt {
    /// Enough ids were found.
    Enough,
    /// The model failed on a piece.
    Failed(tokenizers::Error),
}

/// The result of visiting one part of a walk.
pub type Walk = std::result::Result<(), Halt>;

/// The fast path of one tokenizer.
#[derive(Debug)]
pub struct FastPath {
    added: AddedTokens,
    normal_forms: NormalForms,
    steps: Vec<Step>,
}

impl FastPath {
    /// The fast path for `tokenizer`, or `None` if a part of it is not supported.
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Option<Self> {
        Some(Self {
            added: AddedTokens::of(tokenizer)?,
            normal_forms: NormalForms::of(tokenizer.get_normalizer())?,
            steps: steps::plan(tokenizer.get_pre_tokenizer())?,
        })
    }

    /// Whether the normaliser leaves `text` as it is, so the fast path gives the library's ids.
    pub fn applies_to(&self, text: &str) -> bool {
        self.normal_forms.is_empty()
            || text.is_ascii()
            || self
                .added
                .raw_gaps(text, &mut |gap| self.normal_forms.hold_for(gap))
    }

    /// The first `limit` ids of `text` (to which the fast path [applies](Self::applies_to)).
    pub fn encode_head(
        &self,
        model: &ModelWrapper,
        text: &str,
        limit: usize,
    ) -> tokenizers::Result<Vec<u32>> {
        let mut head = Head {
            model,
            ids: Vec::new(),
            limit,
        };
        let mut buffers = Vec::new();
        let walked = self.added.split(text, &mut |part| match part {
            Part::Added(id) => head.push_added(id),
            Part::Text(gap) => steps::walk(&self.steps, gap, &mut buffers, &mut |piece| {
                head.push_piece(piece)
            }),
        });
        if let Err(Halt::Failed(error)) = walked {
            return Err(error);
        }
        head.ids.truncate(limit);
        Ok(head.ids)
    }
}

/// The ids found so far, and the model that finds more.
struct Head<'m> {
    model: &'m ModelWrapper,
    ids: Vec<u32>,
    limit: usize,
}

impl Head<'_> {
    /// Halts once `limit` ids are found.
    fn room(&self) -> Walk {
        match self.ids.len() >= self.limit {
            true => Err(Halt::Enough),
            false => Ok(()),
        }
    }

    fn push_added(&mut self, id: u32) -> Walk {
        self.room()?;
        self.ids.push(id);
        Ok(())
    }

    /// The model's tokens of one pre-tokenized piece.
    fn push_piece(&mut self, piece: &str) -> Walk {
        self.room()?;
        let tokens = self.model.tokenize(piece).map_err(Halt::Failed)?;
        self.ids.extend(tokens.iter().map(|t| t.id));
        Ok(())
    }
}
