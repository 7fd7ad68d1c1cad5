//! The API's bearer token: made from OS randomness into the data directory
//! with mode 0600 (or read from a file an operator gives), refused when others
//! may read it, and compared in constant time.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The token's file inside the gateway's data directory.
pub const API_TOKEN_FILE: &str = "api-token";
/// Bytes of OS randomness in a generated token (written as hex).
pub const API_TOKEN_BYTES: usize = 32;
/// Shortest token accepted from a file: 128 bits as hex.
pub const API_TOKEN_MIN_CHARS: usize = 32;
/// Why the API token could not be read or made; the gateway does not start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading, writing or syncing the file failed.
    #[error("API token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file may be read or written by others than its owner.
    #[error(
        "API token file {path} has mode {mode:o}: others than its owner may read it; \
         run `chmod 600 {path}` (or delete it to make a new token) and start again"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a usable token.
    #[error("API token file {path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The OS gave no randomness.
    #[error("no OS randomness for the API token: {0}")]
    Random(String),
}

/// The secret a client shows as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct ApiToken {
    text: String,
    // Compared digest to digest, so the time taken says nothing about the
    // presented token's length or its common prefix with this one.
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// A token from its text: at least [`API_TOKEN_MIN_CHARS`] visible ASCII
    /// characters, no spaces (it travels in a header).
    pub fn new(text: &str) -> Result<ApiToken, String> {
        if text.len() < API_TOKEN_MIN_CHARS {
            return Err(format!(
                "a token needs at least {API_TOKEN_MIN_CHARS} characters, this one has {}",
                text.len()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token must be visible ASCII without spaces".into());
        }
        Ok(ApiToken {
            text: text.to_string(),
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// A fresh token: [`API_TOKEN_BYTES`] bytes from the OS, as hex.
    pub fn generate() -> Result<ApiToken, TokenError> {
        use rand::TryRng as _;
        let mut bytes = [0u8; API_TOKEN_BYTES];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| TokenError::Random(e.to_string()))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ApiToken::new(&text).map_err(TokenError::Random)
    }

    /// Reads a token file (surrounding whitespace ignored); refused if group
    /// or others have any permission on it.
    pub fn read(path: &Path) -> Result<ApiToken, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        check_private(path, &std::fs::metadata(path).map_err(io)?)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        ApiToken::new(text.trim()).map_err(|detail| TokenError::Malformed {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// Reads `DIR/api-token`, or, when there is none, generates one and
    /// writes it there with mode 0600 (temp file, fsync, rename, fsync of
    /// the directory), so a crash leaves either no file or the whole token.
    pub fn load_or_create(data_dir: &Path) -> Result<ApiToken, TokenError> {
        let path = data_dir.join(API_TOKEN_FILE);
        match std::fs::metadata(&path) {
            Ok(_) => return ApiToken::read(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TokenError::Io { path, source }),
        }
        let token = ApiToken::generate()?;
        let temp = data_dir.join(format!(".{API_TOKEN_FILE}.{}.tmp", std::process::id()));
        let written = write_private(&temp, token.text.as_bytes())
            .and_then(|()| std::fs::rename(&temp, &path))
            .and_then(|()| sync_dir(data_dir));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(TokenError::Io { path, source });
        }
        tracing::info!(path = %path.display(), "generated a new API token");
        Ok(token)
    }

    /// The token's text, for a client to send.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        constant_time_eq(&digest, &self.digest)
    }
}

/// Whether `a == b`, looking at every byte whatever the first difference
/// (a length mismatch returns at once: lengths are not secret here).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), TokenError> {
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Private from the first byte: never readable by others, even briefly.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}
