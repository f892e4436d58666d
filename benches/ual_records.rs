//! Shared generator of realistic ~1.5 KB Management API MailItemsAccessed NDJSON records.

/// One MailItemsAccessed record of about 1.5 KB, varied by `i`.
pub fn mail_items_accessed(i: usize) -> String {
    format!(
        concat!(
            r#"{{"CreationTime":"2024-03-{day:02}T{hour:02}:{min:02}:{sec:02}","Id":"5f0c{i:08x}-8a1b-4c2d-9e3f-0a1b2c3d4e5f","#,
            r#""Operation":"MailItemsAccessed","OrganizationId":"4a1f3c2e-8b7d-4e6f-9a5b-0c1d2e3f4a5b","RecordType":50,"#,
            r#""ResultStatus":"Succeeded","UserKey":"8d8b2d6c-0f4e-4a9a-9a37-6a0d0b7c1e21","UserType":5,"Version":1,"#,
            r#""Workload":"Exchange","ClientIP":"203.0.113.{ip}","UserId":"S-1-5-21-1825954961-3338807533-2873504967-26087451","#,
            r#""AppId":"8d8b2d6c-0f4e-4a9a-9a37-6a0d0b7c1e21","ClientAppId":"8d8b2d6c-0f4e-4a9a-9a37-6a0d0b7c1e21","#,
            r#""ClientIPAddress":"203.0.113.{ip}","ClientInfoString":"Client=WebServices;BackupVendor-Sync/2.1;","#,
            r#""ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1825954961","#,
            r#""MailboxGuid":"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b{i:04x}","MailboxOwnerSid":"S-1-5-21-42","#,
            r#""MailboxOwnerUPN":"user{mbx}@contoso.example","OrganizationName":"contoso.onmicrosoft.com","#,
            r#""OriginatingServer":"AB1PR01MB0001 (15.20.7409.000)\r\n","SessionId":"f00dbabe-0000-4000-8000-{i:012x}","#,
            r#""AppAccessContext":{{"AADSessionId":"aad-sess-1","ClientAppId":"8d8b2d6c-0f4e-4a9a-9a37-6a0d0b7c1e21","#,
            r#""IssuedAtTime":"2024-03-10T02:01:12","UniqueTokenId":"tok-{tok:016x}"}},"OperationCount":{count},"#,
            r#""OperationProperties":[{{"Name":"MailAccessType","Value":"Bind"}},{{"Name":"IsThrottled","Value":"False"}}],"#,
            r#""Folders":[{{"Id":"LgAAAAinbox{mbx}","Path":"\\Inbox","FolderItems":[{{"InternetMessageId":"<m{i}a@contoso.example>","SizeInBytes":5120}},"#,
            r#"{{"InternetMessageId":"<m{i}b@contoso.example>","SizeInBytes":2048}}]}}]}}"#
        ),
        day = 1 + (i / 86_400) % 28,
        hour = (i / 3600) % 24,
        min = (i / 60) % 60,
        sec = i % 60,
        i = i,
        ip = i % 250,
        mbx = i % 500,
        tok = i / 100,
        count = 1 + i % 7,
    )
}

/// `n` records as NDJSON (used by `decode_throughput`; `decode_memory` streams to a file).
#[allow(dead_code)]
pub fn ndjson(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 1100);
    for i in 0..n {
        out.extend_from_slice(mail_items_accessed(i).as_bytes());
        out.push(b'\n');
    }
    out
}
