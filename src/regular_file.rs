//! Reading a file that must be a regular file (the state file, a password, a CA, a key):
//! never blocks on a FIFO, never reads without bound, and says what the path is
//! when it is not a file.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read. Callers add the file's name and role.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// What the path is instead ("a directory", "a FIFO", …).
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The file's bytes (at most `limit`) and its metadata, both from one open file,
/// so what is checked (mode, owner) is what was read.
pub fn read(path: &Path, limit: u64) -> Result<(Vec<u8>, Metadata), ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular(kind_of(&kind)));
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let bytes = read_at_most(file, limit)?;
    Ok((bytes, metadata))
}

/// Reads to the end, failing past `limit` (the file may grow after the size check).
fn read_at_most(file: File, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, for a message: "a FIFO", …
pub fn kind_of(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").expect("write");
        let (bytes, metadata) = read(&path, 100).expect("read");
        assert_eq!(bytes, b"hello\n");
        assert!(metadata.is_file());
    }

    #[test]
    fn refuses_a_file_over_the_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, [b'x'; 11]).expect("write");
        let err = read(&path, 10).expect_err("too large");
        assert_eq!(err.to_string(), "it is larger than 10 bytes");
        assert_eq!(read(&path, 11).expect("at the limit").0.len(), 11);
    }

    #[test]
    fn refuses_a_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read(dir.path(), 10).expect_err("a directory");
        assert_eq!(err.to_string(), "it is a directory, not a regular file");
    }

    #[test]
    fn refuses_a_fifo_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let err = read(&path, 10).expect_err("a FIFO");
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
    }

    #[test]
    fn refuses_a_character_device() {
        let err = read(Path::new("/dev/null"), 10).expect_err("a device");
        assert_eq!(
            err.to_string(),
            "it is a character device, not a regular file"
        );
    }

    #[test]
    fn a_missing_file_is_the_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read(&dir.path().join("absent"), 10).expect_err("missing");
        assert!(matches!(&err, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound));
        assert_eq!(err.to_string(), "No such file or directory (os error 2)");
    }
}
