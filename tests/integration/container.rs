//! The example Dockerfile: what it copies exists, and hadolint (when installed) accepts it.
//! No Docker engine is needed.

use std::path::Path;
use std::process::Command;

#[test]
fn the_dockerfile_copies_only_what_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile =
        std::fs::read_to_string(root.join("examples/Dockerfile")).expect("examples/Dockerfile");
    let mut copied = 0;
    for line in dockerfile.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        // From another stage, not from the build context.
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        let (_destination, sources) = paths.split_last().expect("COPY has a destination");
        for source in sources {
            assert!(root.join(source).exists(), "COPY {source}: no such path");
            copied += 1;
        }
    }
    assert!(copied >= 5, "only {copied} COPY sources found");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["hkrun", "start""#));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match Command::new("hadolint")
        .arg(root.join("examples/Dockerfile"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!("skipped: hadolint is not installed"),
    }
}
