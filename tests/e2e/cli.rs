//! The command line an operator meets first: configuration checks and exit codes.

use anyhow::Result;

async fn tooltrail(args: &[&str]) -> Result<std::process::Output> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tooltrail"))
            .args(args)
            .output()
            .await?,
    )
}

#[tokio::test]
async fn config_check_names_every_bad_key_and_exits_78() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[log]\nformat = \"xml\"\n[ingest]\nzstd_level = 40\nmax_batch_delay = \"soon\"\n[http]\nlisten = \"nowhere\"\n",
    )?;
    let out = tooltrail(&["config", "check", bad.to_str().unwrap()]).await?;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "log.format",
        "ingest.max_batch_delay",
        "http.listen",
        "ingest.zstd_level",
    ] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    Ok(())
}

#[tokio::test]
async fn config_check_accepts_the_shipped_example() -> Result<()> {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tooltrail.example.toml");
    let out = tooltrail(&["config", "check", example]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_flag_exits_2_and_a_missing_lake_exits_1_with_a_reason() -> Result<()> {
    let out = tooltrail(&["ingest", "--no-such-flag"]).await?;
    assert_eq!(out.status.code(), Some(2));
    let out = tooltrail(&["ingest", "--file", "/nonexistent/events.ndjson"]).await?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no lake: pass --lake"), "{stderr}");
    Ok(())
}
