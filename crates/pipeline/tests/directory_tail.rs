//! Directory tailing: appended lines once, partial lines waited for, restart without repeats,
//! logrotate (rename + new file), copytruncate, and W3C header context for appended lines.

use mailsentry_pipeline::directory_tail::{DirectoryTail, TailStats};
use mailsentry_store::Store;
use std::io::Write;
use std::sync::Arc;

fn rec(id: u32) -> String {
    format!(
        r#"{{"CreationTime":"2024-03-10T02:{:02}:00","Id":"r{id}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"t","AppId":"a","ClientAppId":"a","UserType":5,"ClientIPAddress":"203.0.113.9","MailboxOwnerUPN":"u@x"}}"#,
        id % 60
    )
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn ids(tail: &mut DirectoryTail) -> Vec<String> {
    let mut stats = TailStats::default();
    let mut v: Vec<String> = tail
        .poll(&mut stats)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    v.sort();
    v
}

#[test]
fn appended_lines_once_across_restart_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    let file = logs.join("audit.ndjson");
    let r4 = rec(4);
    let (head, tail_half) = r4.split_at(40);
    append(
        &file,
        &format!("{}\n{}\n{}\n{head}", rec(1), rec(2), rec(3)),
    );
    let mut tail = DirectoryTail::new(&logs, store.clone()).unwrap();
    assert_eq!(ids(&mut tail), ["r1", "r2", "r3"]);
    // The partial line completes; two more arrive.
    append(&file, &format!("{tail_half}\n{}\n{}\n", rec(5), rec(6)));
    assert_eq!(ids(&mut tail), ["r4", "r5", "r6"]);
    assert!(ids(&mut tail).is_empty(), "nothing new, nothing repeated");
    // Restart: a new tail on the same store continues where the old one stopped.
    let mut tail = DirectoryTail::new(&logs, store.clone()).unwrap();
    append(&file, &format!("{}\n", rec(7)));
    assert_eq!(ids(&mut tail), ["r7"]);
    // logrotate: a last line, the file renamed, a new file under the old name.
    append(&file, &format!("{}\n", rec(8)));
    std::fs::rename(&file, logs.join("audit.ndjson.1")).unwrap();
    append(&file, &format!("{}\n{}\n", rec(9), rec(10)));
    assert_eq!(ids(&mut tail), ["r10", "r8", "r9"]);
    // copytruncate: the file is emptied in place and written again.
    std::fs::write(&file, format!("{}\n", rec(11))).unwrap();
    let mut stats = TailStats::default();
    let got: Vec<String> = tail
        .poll(&mut stats)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, ["r11"]);
    assert_eq!(stats.restarted, 1);
}

#[test]
fn appended_w3c_lines_decode_with_the_header_they_follow() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("iis");
    std::fs::create_dir_all(&logs).unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    let file = logs.join("u_ex240310.log");
    let line = |s: u32| {
        format!("2024-03-10 02:10:{s:02} POST /EWS/Exchange.asmx MailboxId=u@x 443 CONTOSO\\svc 203.0.113.7 Agent/1.0 200 0 0 1200 45\n")
    };
    append(&file, "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n#Fields: date time cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status sc-bytes time-taken\n");
    append(&file, &line(1));
    append(&file, &line(2));
    let mut tail = DirectoryTail::new(&logs, store.clone()).unwrap();
    let mut stats = TailStats::default();
    assert_eq!(tail.poll(&mut stats).unwrap().len(), 2);
    append(&file, &line(3));
    let mut stats = TailStats::default();
    let events = tail.poll(&mut stats).unwrap();
    assert_eq!(
        events.len(),
        1,
        "the appended line decodes with the saved #Fields"
    );
    assert_eq!(stats.rejected, 0);
}
