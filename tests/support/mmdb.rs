//! A MaxMind DB (`.mmdb`) writer for tests, so geo lookups are tested
//! against a database made here rather than a real one shipped in the
//! repository: an IPv6 search tree (IPv4 networks under `::/96`, as
//! GeoLite2 lays them out), 24-bit records, and maps of strings and
//! unsigned integers. Format: <https://maxmind.github.io/MaxMind-DB/>.

use std::net::IpAddr;

/// A value of the data section.
pub enum Value {
    Str(&'static str),
    U32(u32),
    Map(Vec<(&'static str, Value)>),
    Array(Vec<Value>),
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database mapping each `(address, prefix length)` network to its
/// value. Networks must not overlap.
pub fn database(networks: Vec<(&str, u8, Value)>) -> Vec<u8> {
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (index, (address, prefix, value)) in networks.into_iter().enumerate() {
        let address: IpAddr = address.parse().expect("a network address");
        let (bits, prefix) = match address {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + usize::from(prefix)),
            IpAddr::V6(v6) => (u128::from(v6), usize::from(prefix)),
        };
        let bit = |i: usize| ((bits >> (127 - i)) & 1) as usize;
        let mut node = 0;
        for i in 0..prefix - 1 {
            node = match nodes[node][bit(i)] {
                Record::Node(next) => next,
                _ => {
                    nodes.push([Record::Empty; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][bit(i)] = Record::Node(next);
                    next
                }
            };
        }
        nodes[node][bit(prefix - 1)] = Record::Data(index);
        offsets.push(data.len());
        encode(&value, &mut data);
    }
    let node_count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for record in node {
            let number = match *record {
                Record::Empty => node_count,
                Record::Node(next) => next,
                Record::Data(index) => node_count + 16 + offsets[index],
            };
            let number = u32::try_from(number).expect("a small database");
            out.extend_from_slice(&number.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let metadata = Value::Map(vec![
        ("binary_format_major_version", Value::U32(2)),
        ("binary_format_minor_version", Value::U32(0)),
        ("build_epoch", Value::U32(0)),
        ("database_type", Value::Str("Outpost-Test")),
        ("description", Value::Map(vec![("en", Value::Str("test"))])),
        ("ip_version", Value::U32(6)),
        ("languages", Value::Array(vec![Value::Str("en")])),
        ("node_count", Value::U32(u32::try_from(node_count).unwrap())),
        ("record_size", Value::U32(24)),
    ]);
    encode(&metadata, &mut out);
    out
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(text) => {
            control(2, text.len(), out);
            out.extend_from_slice(text.as_bytes());
        }
        Value::U32(n) => {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|byte| **byte == 0).count();
            control(6, 4 - skip, out);
            out.extend_from_slice(&bytes[skip..]);
        }
        Value::Map(entries) => {
            control(7, entries.len(), out);
            for (key, value) in entries {
                encode(&Value::Str(key), out);
                encode(value, out);
            }
        }
        Value::Array(items) => {
            // An extended type: type 0 in the control byte, 11 - 7 after.
            control(0, items.len(), out);
            out.push(11 - 7);
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// A control byte of type `kind` (0 for extended types) and `size`
/// (under 285).
fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    if size < 29 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push((kind << 5) | 29);
        out.push(u8::try_from(size - 29).expect("a short value"));
    }
}
