//! End-to-end tests of `mailsentry decode`: golden output for every fixture folder, and the
//! facts the real third-party samples must yield (connector, IP, time, counts).
//!
//! Regenerate the golden files after an intended change with
//! `MAILSENTRY_UPDATE_GOLDEN=1 cargo test -p mailsentry-cli --test decode_cli`.

use assert_cmd::Command;
use serde_json::Value;

mod common;
use common::repo_root;

fn mailsentry() -> Command {
    let mut cmd = Command::cargo_bin("mailsentry").unwrap();
    cmd.current_dir(repo_root());
    cmd
}

struct Run {
    events: Vec<Value>,
    stdout: String,
    stderr: String,
    code: i32,
}

fn decode(args: &[&str]) -> Run {
    let out = mailsentry().arg("decode").args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        events,
        stdout,
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code().unwrap_or(-1),
    }
}

fn check_golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/golden").join(name);
    if std::env::var_os("MAILSENTRY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set MAILSENTRY_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}

#[test]
fn golden_output_for_every_fixture_folder() {
    for folder in [
        "otrf",
        "panther",
        "exchange-onprem",
        "ms-docs",
        "eml",
        "handwritten",
    ] {
        let run = decode(&[&format!("tests/fixtures/{folder}")]);
        assert_eq!(run.code, 0, "{folder}: {}", run.stderr);
        check_golden(&format!("{folder}.jsonl"), &run.stdout);
        check_golden(&format!("{folder}.stderr"), &run.stderr);
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn otrf_mail_items_accessed_from_sentinel_and_defender() {
    let run = decode(&["tests/fixtures/otrf"]);
    let reads = of_kind(&run.events, "mailbox_access");
    assert_eq!(reads.len(), 2, "{}", run.stderr);
    for read in reads {
        assert_eq!(
            read["actor"]["client_app_id"],
            "5a95e683-08ad-424e-a441-1d1aec52c02c"
        );
        assert_eq!(
            read["actor"]["app_id"],
            "00000003-0000-0000-c000-000000000000"
        );
        assert_eq!(read["client"]["ip"], "1.2.3.4");
        assert_eq!(read["time"], "2021-08-02T13:32:07Z");
        assert_eq!(read["operation_count"], 7);
        assert_eq!(read["access_type"], "bind");
        assert_eq!(read["mailbox_upn"], "pgustavo@simulandlabs.com");
        assert_eq!(read["protocol"], "rest");
    }
    let keys = of_kind(&run.events, "credential_change");
    assert!(!keys.is_empty());
    assert_eq!(
        keys[0]["key_ids_added"][0],
        "59eaeebc-8a6b-44a6-9f24-7d55e64420c9"
    );
    assert_eq!(keys[0]["target"]["name"], "SimuLandApp");
    // The Defender export's PowerShell-broken FolderItems are named, and the record is kept.
    let defender = run
        .events
        .iter()
        .find(|e| e["origin"]["format"] == "defender_cloud_app_events")
        .unwrap();
    assert_eq!(defender["unreadable_fields"][0], "Folders.FolderItems");
    assert!(
        run.stderr
            .contains("skipped by reason: defender_row_without_raw_record=2"),
        "{}",
        run.stderr
    );
}

#[test]
fn panther_service_principal_sign_ins_and_credentials() {
    let run = decode(&["tests/fixtures/panther"]);
    let sp: Vec<&Value> = of_kind(&run.events, "sign_in")
        .into_iter()
        .filter(|e| e["category"] == "service_principal")
        .collect();
    assert!(sp.len() >= 4, "{}", run.stderr);
    let ok = sp.iter().find(|e| e["success"] == true).unwrap();
    assert_eq!(
        ok["credential_key_id"],
        "2afc776a-4e79-4588-b2ad-f62c94d6bea8"
    );
    assert_eq!(ok["client"]["ip"], "12.12.12.12");
    assert_eq!(ok["time"], "2023-07-27T13:59:53.691680300Z");
    let failed = sp.iter().find(|e| e["success"] == false).unwrap();
    assert_eq!(failed["error_code"], 7000215);
    let added = of_kind(&run.events, "credential_change");
    assert_eq!(added[0]["target"]["name"], "Production API Service");
    assert_eq!(added[0]["actor_ip"], "2.2.2.2");
}

#[test]
fn exchange_on_prem_ews_and_iis_lines() {
    let run = decode(&[
        "tests/fixtures/exchange-onprem/ews-protocol.log",
        "tests/fixtures/ms-docs",
    ]);
    let ews: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["origin"]["format"] == "ews_protocol_log")
        .collect();
    assert_eq!(ews.len(), 4);
    assert_eq!(ews[1]["actor"]["service_account"], "ANT\\EX13D15UWB002$");
    assert_eq!(ews[1]["mailbox_upn"], "meetings-acct-13-2@amazon.com");
    assert_eq!(ews[1]["client"]["ip"], "10.43.161.9");
    assert_eq!(ews[1]["time"], "2017-07-21T22:18:49.109Z");
    let iis: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["origin"]["format"] == "iis_w3c")
        .collect();
    assert_eq!(iis.len(), 2);
    assert_eq!(iis[0]["actor"]["service_account"], "domain\\serviceaccount");
    assert_eq!(iis[0]["result"], "403");
    assert!(
        iis[0].get("client").is_none(),
        "the <IP Address> redaction is no IP"
    );
    assert_eq!(iis[1]["client"]["ip"], "10.152.152.166");
    assert_eq!(iis[1]["time"], "2015-06-08T04:16:29Z");
}

#[test]
fn every_message_decodes_with_hops_tls_and_auth_results() {
    let run = decode(&[
        "tests/fixtures/eml",
        "tests/fixtures/handwritten/relay.mbox",
    ]);
    let transport = of_kind(&run.events, "transport");
    assert_eq!(transport.len(), 5 + 2, "{}", run.stderr);
    let relayed = transport
        .iter()
        .find(|e| e["message_id"] == "q1@example.net")
        .unwrap();
    assert_eq!(relayed["hops"][0]["from_ip"], "192.0.2.25");
    assert_eq!(relayed["hops"][0]["tls_version"], "tls1_2");
    assert_eq!(relayed["hops"][0]["tls_cipher"], "AES256-SHA");
    assert_eq!(relayed["hops"][1]["tls_version"], "tls1_3");
    assert_eq!(relayed["auth_results"][2]["method"], "dmarc");
    assert_eq!(
        relayed["recipient_domains"],
        serde_json::json!(["contoso.example", "law.example"])
    );
}

#[test]
fn exit_codes_strict_and_missing_paths() {
    let run = decode(&[
        "--strict",
        "tests/fixtures/handwritten/purview-audit-export.csv",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("purview-audit-export.csv:3: truncated: AuditData column"),
        "{}",
        run.stderr
    );
    let run = decode(&["tests/fixtures/does-not-exist"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does-not-exist: cannot read"));
    let run = decode(&["--format", "nonsense", "x"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("one of: json, purview-csv"));
}

#[test]
fn standard_input_and_forced_format() {
    let input =
        std::fs::read(repo_root().join("tests/fixtures/ms-docs/iis-ews-lines.log")).unwrap();
    let out = mailsentry()
        .args(["decode", "--format", "iis-w3c", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2);
    assert!(stdout.contains(r#""file":"-""#));
}

#[test]
fn maildir_tmp_is_skipped_and_undated_messages_are_flagged() {
    let run = decode(&["tests/fixtures/handwritten/maildir"]);
    assert_eq!(run.events.len(), 2);
    let undated = run
        .events
        .iter()
        .find(|e| e["message_id"] == "md2@example.org")
        .unwrap();
    assert_eq!(undated["time_inferred"], true);
}
