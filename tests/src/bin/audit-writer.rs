//! A process that appends to an audit log as fast as it can, for the crash test: it opens the
//! log in `argv[1]` (checkpoint key `argv[2]`, created if absent), then appends records in
//! batches of three as `warrant run` does (two written deferred, the third committing all three
//! with one sync; every seventh batch also checkpointed), and prints each acknowledged index on
//! its own line, flushed, only after the commit that acknowledged it returned.

use std::io::Write as _;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: audit-writer DIR KEY");
        return std::process::ExitCode::from(2);
    };
    let mut audit = match broker::audit::Audit::open(dir.as_ref(), key.as_ref()) {
        Ok(audit) => audit,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout();
    let mut batch = Vec::new();
    for n in 0_u64.. {
        let body =
            serde_json::json!({ "n": n, "pad": "x".repeat(usize::try_from(n % 200).unwrap_or(0)) });
        batch.push(n);
        let written = if n % 21 == 20 {
            audit.record("test", body).and_then(|()| audit.finish())
        } else if n % 3 == 2 {
            audit.record_before_effect("test", body)
        } else {
            audit.record("test", body)
        };
        if let Err(e) = written {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
        if n % 3 != 2 {
            // Written, not acknowledged yet.
            continue;
        }
        for acked in batch.drain(..) {
            if writeln!(stdout, "{acked}").is_err() {
                return std::process::ExitCode::from(1);
            }
        }
        if stdout.flush().is_err() {
            return std::process::ExitCode::from(1);
        }
    }
    std::process::ExitCode::SUCCESS
}
