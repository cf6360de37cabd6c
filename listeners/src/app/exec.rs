//! The exec app's interface (the app itself is being written on the
//! `exec` branch; until it lands, every connection is refused).

use crate::app::{App, AppContext, Refused, Service};

/// Limits of an exec listener.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Most children at once.
    pub max: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { max: 256 }
    }
}

/// Splits a command line as a shell would.
pub fn parse_command(s: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(s).map_err(|e| format!("exec command {s:?}: {e}"))?;
    if words.is_empty() {
        return Err("exec needs a program".into());
    }
    Ok(words)
}

/// A program per connection.
pub struct ExecService {
    argv: Vec<String>,
}

impl ExecService {
    /// A service starting `argv`.
    pub fn new(argv: Vec<String>, _opts: ExecOptions) -> Result<ExecService, String> {
        if argv.is_empty() {
            return Err("exec needs a program".into());
        }
        Ok(ExecService { argv })
    }
}

impl Service for ExecService {
    fn name(&self) -> &str {
        "exec"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Err(Refused(format!("exec {:?}: not built yet", self.argv)))
    }
}
