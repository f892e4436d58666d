//! Rejects, never losses: broken inputs give located rejects, the records around them still
//! decode, every record is accounted for, and no input panics.

use mailsentry_ingest::StreamDecoder;
use mailsentry_ingest::{
    decode_bytes, DecodeOptions, DecodeStats, Decoded, InputFormat, RejectClass,
};
use proptest::prelude::*;
use std::io::Read;
use std::sync::Arc;

/// A reader that hands out at most `step` bytes per read, so records straddle every read
/// boundary and the framer's whole-line fast path gives way to its byte scanner.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Outcomes as (event id or reject line and class), in order.
fn outcomes(items: impl Iterator<Item = Decoded>) -> Vec<String> {
    items
        .map(|d| match d {
            Decoded::Event(e) => e.id,
            Decoded::Reject(r) => format!("{}:{:?}", r.line, r.error.class),
        })
        .collect()
}

fn good_record(i: usize) -> String {
    format!(
        concat!(
            r#"{{"CreationTime":"2024-03-10T02:{:02}:00","Id":"rec-{}","Operation":"MailItemsAccessed","#,
            r#""OrganizationId":"t1","RecordType":50,"Workload":"Exchange","AppId":"app-1","ClientAppId":"app-1","#,
            r#""ClientIPAddress":"203.0.113.{}","OperationCount":{},"MailboxOwnerUPN":"u{}@contoso.example","#,
            r#""OperationProperties":[{{"Name":"MailAccessType","Value":"Bind"}}]}}"#
        ),
        i % 60,
        i,
        i % 250,
        i + 1,
        i
    )
}

fn decode(input: &[u8]) -> (Vec<Decoded>, DecodeStats) {
    decode_bytes("input", input, DecodeOptions::default())
}

fn decode_as(input: &[u8], format: InputFormat, max: usize) -> (Vec<Decoded>, DecodeStats) {
    decode_bytes(
        "input",
        input,
        DecodeOptions {
            max_record_size: max,
            format: Some(format),
        },
    )
}

fn event_ids(items: &[Decoded]) -> Vec<String> {
    items
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(e) => Some(e.id.clone()),
            Decoded::Reject(_) => None,
        })
        .collect()
}

fn rejects(items: &[Decoded]) -> Vec<(u64, RejectClass)> {
    items
        .iter()
        .filter_map(|d| match d {
            Decoded::Reject(r) => Some((r.line, r.error.class)),
            Decoded::Event(_) => None,
        })
        .collect()
}

fn assert_accounted(stats: &DecodeStats) {
    assert!(
        stats.all_records_accounted(),
        "every record ends in exactly one bucket: {stats:?}"
    );
}

/// NDJSON with one broken line in the middle, for every way a line can be broken.
#[test]
fn one_broken_line_never_stops_its_neighbours() {
    let cases: Vec<(&str, Vec<u8>, RejectClass)> = vec![
        ("truncated", br#"{"CreationTime":"2024-03-10T02:00:00","Id":"x","#.to_vec(), RejectClass::Truncated),
        ("invalid utf-8", {
            let mut v = good_record(99).into_bytes();
            let at = v.iter().position(|&c| c == b'u').unwrap();
            v[at] = 0xff;
            v
        }, RejectClass::InvalidUtf8),
        ("garbage", b"this is not json".to_vec(), RejectClass::InvalidJson),
        ("unbalanced", b"}".to_vec(), RejectClass::InvalidJson),
        ("no time", br#"{"Id":"y","Operation":"MailItemsAccessed","RecordType":50}"#.to_vec(), RejectClass::MissingTime),
        ("bad time", br#"{"CreationTime":"yesterday","Id":"y","Operation":"MailItemsAccessed","RecordType":50}"#.to_vec(), RejectClass::BadTime),
        ("unknown shape", br#"{"hello":"world"}"#.to_vec(), RejectClass::UnrecognizedRecord),
        ("too deep", {
            let mut v = br#"{"CreationTime":"2024-03-10T02:00:00","Operation":"x","a":"#.to_vec();
            v.extend(std::iter::repeat_n(b'[', 200));
            v.extend(std::iter::repeat_n(b']', 200));
            v.push(b'}');
            v
        }, RejectClass::TooDeep),
        // Balanced, so the NDJSON fast path frames it whole: the decoder bounds it before any
        // parser recurses into it.
        ("very deep", {
            let mut v = br#"{"CreationTime":"2024-03-10T02:00:00","a":"#.to_vec();
            v.extend(std::iter::repeat_n(b'[', 100_000));
            v.extend(std::iter::repeat_n(b']', 100_000));
            v.push(b'}');
            v
        }, RejectClass::TooDeep),
    ];
    for (name, broken, class) in cases {
        let mut input = Vec::new();
        input.extend(good_record(1).as_bytes());
        input.push(b'\n');
        input.extend(&broken);
        input.push(b'\n');
        input.extend(good_record(2).as_bytes());
        input.extend(b"\r\n");
        let (items, stats) = decode(&input);
        assert_eq!(event_ids(&items), vec!["rec-1", "rec-2"], "{name}");
        assert_eq!(rejects(&items), vec![(2, class)], "{name}");
        assert_accounted(&stats);
    }
}

#[test]
fn a_50_mb_line_is_rejected_without_being_buffered_and_the_next_line_decodes() {
    let mut input = Vec::with_capacity(51 << 20);
    input.extend(good_record(1).as_bytes());
    input.extend(b"\n{\"CreationTime\":\"2024-03-10T02:00:00\",\"pad\":\"");
    input.extend(std::iter::repeat_n(b'a', 50 << 20));
    input.extend(b"\"}\n");
    input.extend(good_record(3).as_bytes());
    let (items, stats) = decode(&input);
    assert_eq!(event_ids(&items), vec!["rec-1", "rec-3"]);
    assert_eq!(rejects(&items), vec![(2, RejectClass::Oversize)]);
    let Decoded::Reject(r) = &items[1] else {
        panic!()
    };
    assert!(r.error.detail.contains("52428"), "{}", r.error.detail);
    assert_accounted(&stats);
}

#[test]
fn oversize_lines_in_line_formats_are_rejected_too() {
    let long = format!("#Fields: date time cs-uri-stem cs-username c-ip\n2024-01-01 00:00:00 /EWS/{} u 1.2.3.4\n2024-01-01 00:00:01 /EWS/x u 1.2.3.4\n", "a".repeat(5000));
    let (items, stats) = decode_as(long.as_bytes(), InputFormat::IisW3c, 1024);
    assert_eq!(rejects(&items), vec![(2, RejectClass::Oversize)]);
    assert_eq!(stats.events, 1);
    assert_accounted(&stats);
}

#[test]
fn deeply_nested_input_is_bounded() {
    let mut input = Vec::new();
    input.extend(std::iter::repeat_n(b'[', 100_000));
    let (items, stats) = decode(&input);
    assert!(!rejects(&items).is_empty());
    assert_eq!(stats.events, 0);
    let mut obj = b"{\"a\":".to_vec();
    obj.extend(std::iter::repeat_n(b'{', 10_000));
    let (items, _) = decode(&obj);
    assert!(rejects(&items)
        .iter()
        .all(|(_, c)| matches!(c, RejectClass::TooDeep | RejectClass::Truncated)));
}

#[test]
fn truncated_array_keeps_the_complete_records() {
    let input = format!(
        "[\n  {},\n  {},\n  {{\"CreationTime\": \"2024-03",
        good_record(1),
        good_record(2)
    );
    let (items, stats) = decode(input.as_bytes());
    assert_eq!(event_ids(&items), vec!["rec-1", "rec-2"]);
    assert_eq!(rejects(&items), vec![(4, RejectClass::Truncated)]);
    assert_accounted(&stats);
}

#[test]
fn envelopes_arrays_bom_and_pretty_printing_are_all_read() {
    let records = format!("{},{}", good_record(1), good_record(2));
    let layouts = [
        format!("\u{feff}{}\n{}\n", good_record(1), good_record(2)),
        format!("[{records}]"),
        format!("{{\"records\":[{records}]}}"),
        format!("{{ \"records\" : [\n{records}\n], \"other\": {{\"x\": [1,2]}} }}\n"),
        format!("{{\"value\":[{records}],\"@odata.nextLink\":\"https://x\"}}"),
        serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&good_record(1)).unwrap(),
        )
        .unwrap()
            + "\n"
            + &serde_json::to_string_pretty(
                &serde_json::from_str::<serde_json::Value>(&good_record(2)).unwrap(),
            )
            .unwrap(),
    ];
    for layout in layouts {
        let (items, stats) = decode(layout.as_bytes());
        assert_eq!(event_ids(&items), vec!["rec-1", "rec-2"], "{layout}");
        assert_eq!(stats.rejected_total(), 0, "{layout}");
    }
}

#[test]
fn gzip_is_decompressed_transparently() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{}\n{}\n", good_record(1), good_record(2)).as_bytes())
        .unwrap();
    let bytes = gz.finish().unwrap();
    let (items, _) = decode(&bytes);
    assert_eq!(event_ids(&items), vec!["rec-1", "rec-2"]);
    // A truncated gzip stream keeps what was complete and reports the rest.
    let (items, stats) = decode(&bytes[..bytes.len() - 12]);
    assert!(stats.rejected_total() >= 1, "{items:?}");
}

#[test]
fn empty_and_whitespace_inputs_produce_nothing() {
    for input in [&b""[..], b"\n\n  \n", b"\xef\xbb\xbf"] {
        let (items, stats) = decode(input);
        assert!(items.is_empty());
        assert_eq!(stats.rejected_total(), 0);
    }
}

#[test]
fn unknown_formats_are_one_located_reject() {
    let (items, stats) = decode(b"\x00\x01\x02 binary junk");
    assert_eq!(rejects(&items), vec![(0, RejectClass::UnknownFormat)]);
    assert_accounted(&stats);
}

#[test]
fn csv_rows_that_do_not_fit_the_header_are_rejected_and_the_rest_decode() {
    let csv = concat!(
        "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\r\n",
        "a,9/20/2023 4:05:03 AM,50,MailItemsAccessed,u,\"{\"\"Id\"\":\"\"a\"\",\"\"Operation\"\":\"\"MailItemsAccessed\"\",\"\"RecordType\"\":50}\"\r\n",
        "b,9/20/2023 4:05:04 AM\r\n",
        "c,9/20/2023 4:05:05 AM,50,MailItemsAccessed,u,\"{\"\"Id\"\":\"\"c\"\",\"\"Operation\"\":\"\"MailItemsAccessed\"\",\"\"RecordType\"\":50}\"\r\n",
        "d,9/20/2023 4:05:06 AM,50,MailItemsAccessed,u,\"{never closed\r\n",
    );
    let (items, stats) = decode(csv.as_bytes());
    assert_eq!(event_ids(&items), vec!["a", "c"]);
    assert_eq!(
        rejects(&items),
        vec![(3, RejectClass::BadRow), (5, RejectClass::Truncated)]
    );
    let Decoded::Event(e) = &items[0] else {
        panic!()
    };
    assert_eq!(e.time.to_rfc3339(), "2023-09-20T04:05:03+00:00");
    assert_accounted(&stats);
}

#[test]
fn w3c_fields_can_change_mid_file() {
    let log = concat!(
        "#Fields: date time cs-uri-stem cs-username c-ip\n",
        "2024-01-01 00:00:00 /EWS/Exchange.asmx svc 1.2.3.4\n",
        "#Fields: c-ip cs-username cs-uri-stem date time\n",
        "5.6.7.8 svc /ews/exchange.asmx 2024-01-01 00:00:01\n",
        "5.6.7.8 svc /ews/exchange.asmx\n",
    );
    let (items, stats) = decode(log.as_bytes());
    let ips: Vec<String> = items
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(e) => match &e.kind {
                mailsentry_events::EventKind::MailboxAccess(m) => {
                    m.client.map(|c| c.ip.to_string())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(ips, vec!["1.2.3.4", "5.6.7.8"]);
    assert_eq!(rejects(&items), vec![(5, RejectClass::BadRow)]);
    assert_accounted(&stats);
}

#[test]
fn mbox_separators_and_quoted_from_lines() {
    let mbox = concat!(
        "From a@x Sun Mar 10 02:00:00 2024\n",
        "From: a@x.example\nDate: Sun, 10 Mar 2024 02:00:00 +0000\nMessage-ID: <1@x>\n\n",
        "body\n>From quoted\n\n",
        "From b@y Sun Mar 10 03:00:00 2024\n",
        "From: b@y.example\nMessage-ID: <2@y>\n\nbody two\n",
    );
    let (items, stats) = decode(mbox.as_bytes());
    assert_eq!(stats.events, 2);
    let ids: Vec<Option<String>> = items
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(e) => Some(e.origin.record_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![Some("1@x".to_string()), Some("2@y".to_string())]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// No decoder panics on arbitrary bytes, sniffed or forced, and every record is accounted.
    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (_, stats) = decode(&bytes);
        assert_accounted(&stats);
        for format in InputFormat::ALL {
            let (_, stats) = decode_as(&bytes, format, 512);
            assert_accounted(&stats);
        }
    }

    /// Structured noise: JSON-ish and header-ish fragments, which reach deeper code than random bytes.
    #[test]
    fn no_decoder_panics_on_structured_noise(parts in proptest::collection::vec(prop_oneof![
        Just("{".to_string()), Just("}".to_string()), Just("[".to_string()), Just("]".to_string()),
        Just("\"".to_string()), Just("\\".to_string()), Just("\n".to_string()), Just(",".to_string()),
        Just(":".to_string()), Just("\"records\":".to_string()), Just("\"CreationTime\":\"2024-01-01T00:00:00\"".to_string()),
        Just("\"Operation\":\"MailItemsAccessed\"".to_string()), Just("\"Folders\":\"[{\\\"Path\\\":1}]\"".to_string()),
        Just("\"OperationProperties\":[\"@{Value=Bind; Name=MailAccessType}\"]".to_string()),
        Just("#Fields: date time cs-uri-stem\n".to_string()), Just("From x\n".to_string()),
        Just("Received: from a ([1.2.3.4]) by b with ESMTPS; Sun, 10 Mar 2024 02:00:00 +0000\n".to_string()),
        "[a-z0-9 ]{0,8}".prop_map(|s| s),
    ], 0..64)) {
        let input = parts.concat();
        let (_, stats) = decode(input.as_bytes());
        assert_accounted(&stats);
        for format in InputFormat::ALL {
            let (_, stats) = decode_as(input.as_bytes(), format, 256);
            assert_accounted(&stats);
        }
    }

    /// Corrupting one NDJSON line loses exactly that line.
    #[test]
    fn corrupting_one_line_loses_only_that_line(n in 2usize..20, victim in 0usize..20, cut in 1usize..200) {
        let victim = victim % n;
        let mut lines: Vec<String> = (0..n).map(good_record).collect();
        let keep = cut.min(lines[victim].len() - 1);
        lines[victim].truncate(keep);
        let input = lines.join("\n");
        let (items, stats) = decode(input.as_bytes());
        let expected: Vec<String> = (0..n).filter(|i| *i != victim).map(|i| format!("rec-{i}")).collect();
        // The victim's line is rejected unless the first line (which sets the layout) was cut.
        if victim != 0 {
            prop_assert_eq!(event_ids(&items), expected);
            prop_assert_eq!(stats.rejected_total(), 1);
        }
        assert_accounted(&stats);
    }

    /// Framing does not depend on how the input arrives: read whole (NDJSON fast path) or a
    /// few bytes at a time (byte scanner), the same events and located rejects come out.
    #[test]
    fn outcomes_do_not_depend_on_read_sizes(
        kinds in proptest::collection::vec(0u8..6, 1..24),
        step in 1usize..97,
    ) {
        let mut input = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            match kind {
                0 | 1 => input.extend(good_record(i).as_bytes()),
                2 => input.extend(&good_record(i).as_bytes()[..40]),
                3 => {
                    input.extend(br#"{"CreationTime":"2024-03-10T02:00:00","a":"#);
                    input.extend(std::iter::repeat_n(b'[', 150));
                    input.extend(std::iter::repeat_n(b']', 150));
                    input.push(b'}');
                }
                4 => input.extend(br#"{"Id":"x","s":"no close}"#),
                _ => input.extend(b"  \r"),
            }
            input.extend(if i % 3 == 0 { &b"\r\n"[..] } else { &b"\n"[..] });
        }
        let (whole, _) = decode(&input);
        let trickled = StreamDecoder::from_reader(
            Arc::from("input"),
            Box::new(Trickle { data: input.clone(), at: 0, step }),
            DecodeOptions::default(),
            None,
        );
        prop_assert_eq!(outcomes(whole.into_iter()), outcomes(trickled));
    }
}
