//! `vipd keygen`: a 64-hex-digit key on stdout or in a new 0600 file, never
//! overwriting one.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn vipd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vipd"))
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-keygen-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_key(text: &str) -> bool {
    text.len() == 65
        && text.ends_with('\n')
        && text.trim_end().bytes().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn without_a_path_the_key_goes_to_stdout() {
    let out = vipd().arg("keygen").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(is_key(&text), "{text:?}");
}

#[test]
fn a_path_gets_a_0600_file_and_is_never_overwritten() {
    let dir = scratch_dir();
    let path = dir.join("db.key");
    let out = vipd().arg("keygen").arg(&path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "the key must not be printed too");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(is_key(&first));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);

    let out = vipd().arg("keygen").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    let out = vipd()
        .arg("keygen")
        .arg(dir.join("missing/dir/k.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}
