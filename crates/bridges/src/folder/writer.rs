//! The out side: one file per context change, rendered from the bridge's templates and written
//! atomically (a temporary file in the same folder, then a rename).

use crate::error::BridgeError;
use crate::mapping::IdentifierMapping;
use crate::template::{ContextData, Escape, Template};
use crate::text::{self, Encoder, LineEndings};
use lockstep_fhircast::EventSpec;
use std::path::PathBuf;

/// The out side of a folder bridge, validated: where, on which events, and its templates.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub dir: PathBuf,
    pub events: Vec<&'static EventSpec>,
    pub file_name: Template,
    pub content: Content,
    pub encoder: Encoder,
    pub line_endings: LineEndings,
}

/// The file's content template.
#[derive(Debug, Clone)]
pub enum Content {
    /// Given in the configuration, parsed and checked with it.
    Template(Template),
    /// In a file read (and checked) each time the bridge starts: it may be edited later.
    File { path: PathBuf, escape: Escape },
}

/// Why a file out could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot render the file: {0}")]
    Render(#[from] crate::template::RenderError),
    #[error("cannot encode the file: {0}")]
    Encode(String),
    #[error("cannot write into the folder: {0}")]
    Io(#[from] std::io::Error),
}

/// The out side: renders and writes one file per context change.
pub struct Writer {
    dir: PathBuf,
    file_name: Template,
    content: Template,
    encoder: Encoder,
    line_endings: LineEndings,
    mapping: IdentifierMapping,
}

impl Writer {
    /// The writer of a bridge's out side; a template file is read here.
    pub fn new(out: &Outgoing, mapping: &IdentifierMapping) -> Result<Self, BridgeError> {
        let content = match &out.content {
            Content::Template(template) => template.clone(),
            Content::File { path, escape } => {
                let setup = |e: String| BridgeError::Setup(e);
                let text = std::fs::read_to_string(path)
                    .map_err(|e| setup(format!("cannot read {}: {e}", path.display())))?;
                let template = Template::parse(&text, *escape).map_err(|e| setup(e.to_string()))?;
                template.check_mapped(mapping).map_err(setup)?;
                template
            }
        };
        Ok(Writer {
            dir: out.dir.clone(),
            file_name: out.file_name.clone(),
            content,
            encoder: out.encoder,
            line_endings: out.line_endings,
            mapping: mapping.clone(),
        })
    }

    /// Writes the file for a context: a temporary file in the same folder, then a rename, so
    /// the app never reads half a file. Returns the file's path.
    pub fn write(&self, data: &ContextData) -> Result<PathBuf, WriteError> {
        let now = time::OffsetDateTime::now_utc();
        let name = self.file_name.render(data, &self.mapping, now)?;
        let text = self.content.render(data, &self.mapping, now)?;
        let bytes =
            text::encode(&text, self.encoder, self.line_endings).map_err(WriteError::Encode)?;
        let target = self.dir.join(&name);
        let temp = self
            .dir
            .join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = std::fs::write(&temp, &bytes).and_then(|()| std::fs::rename(&temp, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        Ok(target)
    }
}
