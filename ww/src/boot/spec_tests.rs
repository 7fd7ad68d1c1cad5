use super::*;
use crate::transport::Identity;

fn peer(n: u8) -> crate::transport::PeerId {
    Identity::from_secret([n; 32]).peer_id()
}

fn parse(s: &str) -> Result<DiscoverySpec, SpecError> {
    s.parse()
}

#[test]
fn default_is_loopback_multicast() {
    assert_eq!(
        parse(DEFAULT_DISCOVER),
        Ok(DiscoverySpec::Multicast {
            group: SocketAddrV4::new(Ipv4Addr::new(228, 8, 8, 8), 8822),
            interface: Ipv4Addr::LOCALHOST,
            gradual: false,
        })
    );
}

#[test]
fn multicast_forms() {
    let expected = DiscoverySpec::Multicast {
        group: SocketAddrV4::new(Ipv4Addr::new(239, 0, 0, 1), 12345),
        interface: Ipv4Addr::new(10, 0, 0, 2),
        gradual: false,
    };
    assert_eq!(
        parse("/ip4/239.0.0.1/udp/12345/multicast/10.0.0.2"),
        Ok(expected.clone())
    );
    assert_eq!(
        parse("multicast://239.0.0.1:12345?iface=10.0.0.2"),
        Ok(expected)
    );
    let lo0 = parse("/ip4/228.8.8.8/udp/8822/multicast/lo0/survey").expect("parses");
    assert_eq!(
        lo0,
        DiscoverySpec::Multicast {
            group: SocketAddrV4::new(Ipv4Addr::new(228, 8, 8, 8), 8822),
            interface: Ipv4Addr::LOCALHOST,
            gradual: true,
        }
    );
    assert_eq!(parse("survey://228.8.8.8:8822?iface=lo"), Ok(lo0.clone()));
    assert_eq!(parse("survey://228.8.8.8:8822"), Ok(lo0));
}

#[test]
fn cidr_forms() {
    let expected = DiscoverySpec::Cidr {
        network: Ipv4Addr::new(10, 0, 0, 0),
        prefix_len: 24,
        port: 2020,
    };
    assert_eq!(
        parse("/ip4/10.0.0.0/udp/2020/cidr/24"),
        Ok(expected.clone())
    );
    assert_eq!(parse("cidr://10.0.0.0/24:2020"), Ok(expected.clone()));
    // Host bits are masked off.
    assert_eq!(parse("cidr://10.0.0.77/24:2020"), Ok(expected));
    assert!(parse("/ip4/10.0.0.1/udp/2020/cidr/32").is_ok());
    assert!(parse("/ip4/0.0.0.0/udp/2020/cidr/0").is_ok());
}

#[test]
fn static_forms_group_by_peer() {
    let (a, b) = (peer(1), peer(2));
    let list = format!(
        "/ip4/10.0.0.1/tcp/4001/p2p/{a}, /ip4/10.0.0.2/tcp/4001/p2p/{b},/dns4/x/tcp/1/p2p/{a}"
    );
    let expected = DiscoverySpec::Static(vec![
        PeerInfo {
            peer: a,
            addresses: vec![
                Address::new("/ip4/10.0.0.1/tcp/4001"),
                Address::new("/dns4/x/tcp/1"),
            ],
        },
        PeerInfo {
            peer: b,
            addresses: vec![Address::new("/ip4/10.0.0.2/tcp/4001")],
        },
    ]);
    assert_eq!(parse(&list), Ok(expected.clone()));
    assert_eq!(parse(&format!("static://{list}")), Ok(expected));
}

#[test]
fn none_and_display_round_trip() {
    assert_eq!(parse("none"), Ok(DiscoverySpec::None));
    for text in [
        "none",
        "/ip4/228.8.8.8/udp/8822/multicast/127.0.0.1",
        "/ip4/228.8.8.8/udp/8822/multicast/127.0.0.1/survey",
        "/ip4/10.0.0.0/udp/2020/cidr/24",
    ] {
        assert_eq!(parse(text).expect("parses").to_string(), text);
    }
    let list = format!("/ip4/10.0.0.1/tcp/4001/p2p/{}", peer(3));
    assert_eq!(parse(&list).expect("parses").to_string(), list);
}

#[test]
fn bad_inputs_say_what_was_expected() {
    let cases: &[(&str, &str)] = &[
        ("", "none, /ip4/"),
        (
            "/ip4/10.0.0.1/udp/8822/multicast/lo",
            "multicast group in 224.0.0.0/4",
        ),
        ("/ip4/228.8.8.8/udp/0/multicast/lo", "port in 1..=65535"),
        ("/ip4/228.8.8.8/udp/x/multicast/lo", "port in 1..=65535"),
        ("/ip4/228.8.8.8/udp/8822/multicast/eth0", "IPv4 address"),
        ("/ip4/nope/udp/8822/multicast/lo", "IPv4 address"),
        ("/ip4/10.0.0.0/udp/2020/cidr/33", "prefix length in 0..=32"),
        ("/ip4/10.0.0.0/udp/2020/cidr/-1", "prefix length in 0..=32"),
        ("/ip6/::1/udp/2020/cidr/24", "none, /ip4/"),
        ("cidr://10.0.0.0:2020", "<network>/<prefix>:<port>"),
        ("cidr://10.0.0.0/24", "<network>/<prefix>:<port>"),
        ("multicast://228.8.8.8", "<group>:<port>"),
        ("multicast://228.8.8.8:1?if=lo", "iface="),
        ("static://ip4/1.2.3.4/tcp/1/p2p/x", "/p2p/<peer id>"),
        ("/ip4/1.2.3.4/tcp/1/p2p/notanid", "/p2p/<peer id>"),
        (
            "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            "/p2p/<peer id>",
        ),
    ];
    for (input, expected) in cases {
        let error = parse(input).expect_err(input);
        let text = error.to_string();
        assert!(text.contains(expected), "{input:?} gave {text:?}");
        assert!(text.contains("expected"), "{text}");
    }
}

#[test]
fn static_list_is_bounded() {
    let one = format!("/ip4/10.0.0.1/tcp/1/p2p/{}", peer(1));
    let many = vec![one; STATIC_ADDRESSES_MAX + 1].join(",");
    assert!(parse(&many).is_err());
}

#[test]
fn boot_server_form_round_trips_and_is_one_server() {
    let text = format!("/ip4/10.0.0.9/tcp/7000/p2p/{}/boot", peer(3));
    let spec = parse(&text).unwrap();
    assert_eq!(
        spec,
        DiscoverySpec::Boot(PeerInfo {
            peer: peer(3),
            addresses: vec![Address::new("/ip4/10.0.0.9/tcp/7000")],
        })
    );
    assert_eq!(spec.to_string(), text);
    let two = format!("/ip4/10.0.0.9/tcp/7000/p2p/{},{text}", peer(3));
    assert!(parse(&two)
        .unwrap_err()
        .to_string()
        .contains("one boot server"));
    let no_id = parse("/ip4/10.0.0.9/tcp/7000/boot").unwrap_err();
    assert!(no_id.to_string().contains("/boot"), "{no_id}");
}

#[test]
fn combined_forms_round_trip_and_are_bounded() {
    let boot = format!("/ip4/10.0.0.9/tcp/7000/p2p/{}/boot", peer(3));
    let text = format!("{boot}+{DEFAULT_DISCOVER}");
    let spec = parse(&text).unwrap();
    let DiscoverySpec::All(parts) = &spec else {
        panic!("{spec:?}");
    };
    assert_eq!(parts.len(), 2);
    assert!(matches!(parts[0], DiscoverySpec::Boot(_)));
    assert!(matches!(parts[1], DiscoverySpec::Multicast { .. }));
    assert_eq!(parse(&spec.to_string()).unwrap(), spec);
    assert!(parse(&format!("{boot}+none")).is_err());
    let five = [DEFAULT_DISCOVER; COMBINED_MAX + 1].join("+");
    assert!(parse(&five).unwrap_err().to_string().contains("at most"));
    assert!(parse(&format!("{boot}+/ip4/1.2.3.4/udp/x/cidr/24")).is_err());
}
