//! The few messages of TensorBoard's `event.proto` and `summary.proto` that scalars need, with
//! their field numbers (decoded by `prost`; unknown fields of other writers are skipped).

/// `tensorboard.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step the event belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// The `what` of an [`Event`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `brain.Event:2` in the first event of a file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Values at the event's step.
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session marker (START purges later steps of earlier files).
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value` with a `simple_value` (a scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The scalar's name (`train/loss`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value; a oneof, so that 0.0 is still written.
    #[prost(oneof = "Value", tags = "2")]
    pub value: Option<Value>,
}

/// The `value` of a [`SummaryValue`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A 32-bit scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// `tensorboard.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// `SessionLog.SessionStatus`: 1 = START.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// Unused by ft.
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// Unused by ft.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.START`.
pub const SESSION_START: i32 = 1;

impl Event {
    /// The first event of a file.
    pub fn file_version(wall_time: f64, step: i64) -> Self {
        Self {
            wall_time,
            step,
            what: Some(What::FileVersion("brain.Event:2".into())),
        }
    }

    /// A session START at `step`: TensorBoard drops the events of earlier files at `step` and later.
    pub fn session_start(wall_time: f64, step: i64) -> Self {
        Self {
            wall_time,
            step,
            what: Some(What::SessionLog(SessionLog {
                status: SESSION_START,
                checkpoint_path: String::new(),
                msg: String::new(),
            })),
        }
    }

    /// Scalars at `step`.
    pub fn scalars(wall_time: f64, step: i64, scalars: &[(&str, f64)]) -> Self {
        let value = scalars
            .iter()
            .map(|&(tag, v)| SummaryValue {
                tag: tag.to_string(),
                value: Some(Value::SimpleValue(v as f32)),
            })
            .collect();
        Self {
            wall_time,
            step,
            what: Some(What::Summary(Summary { value })),
        }
    }

    /// The scalars this event carries, as `(tag, value)`.
    pub fn scalar_values(&self) -> Vec<(String, f32)> {
        match &self.what {
            Some(What::Summary(summary)) => summary
                .value
                .iter()
                .filter_map(|v| v.value.as_ref().map(|Value::SimpleValue(x)| (v.tag.clone(), *x)))
                .collect(),
            _ => Vec::new(),
        }
    }
}
