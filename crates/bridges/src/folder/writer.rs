//! The out side: one file per context change, rendered from the bridge's templates and written
//! atomically (a temporary file in the same folder, then a rename).

use crate::config::FolderOut;
use crate::error::BridgeError;
use crate::mapping::IdentifierMapping;
use crate::template::{ContextData, Escape, Template};
use crate::text::{self, Encoder};
use std::path::PathBuf;

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
    out: FolderOut,
    mapping: IdentifierMapping,
}

impl Writer {
    pub fn new(out: &FolderOut, mapping: &IdentifierMapping) -> Result<Self, BridgeError> {
        let setup = |e: String| BridgeError::Setup(e);
        let template_text = match (&out.template, &out.template_file) {
            (Some(text), _) => text.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| setup(format!("cannot read {}: {e}", file.display())))?,
            (None, None) => return Err(setup("no template".into())),
        };
        let content = Template::parse(&template_text, out.format.escape())
            .map_err(|e| setup(e.to_string()))?;
        content.check_mapped(mapping).map_err(setup)?;
        Ok(Writer {
            dir: out.dir.clone(),
            file_name: Template::parse(&out.file_name, Escape::FileName)
                .map_err(|e| setup(e.to_string()))?,
            content,
            encoder: text::encoder(&out.encoding.0).map_err(setup)?,
            out: out.clone(),
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
            text::encode(&text, self.encoder, self.out.line_endings).map_err(WriteError::Encode)?;
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
