use super::*;

#[test]
fn the_default_capture_is_istios_with_marks() {
    let expected = "\
*nat
:RINGMESH_INBOUND - [0:0]
:RINGMESH_REDIRECT - [0:0]
:RINGMESH_IN_REDIRECT - [0:0]
:RINGMESH_OUTPUT - [0:0]
-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A RINGMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A RINGMESH_INBOUND -p tcp --dport 15000 -j RETURN
-A RINGMESH_INBOUND -p tcp -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -m mark --mark 0x53a -j RETURN
-A RINGMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m mark --mark 0x539 -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -o lo -m mark ! --mark 0x539 -j RETURN
-A RINGMESH_OUTPUT -m mark --mark 0x539 -j RETURN
-A RINGMESH_OUTPUT -d 127.0.0.1/32 -j RETURN
-A RINGMESH_OUTPUT -j RINGMESH_REDIRECT
COMMIT
";
    assert_eq!(Capture::default().payload(Family::V4), expected);
}

#[test]
fn cidrs_go_to_their_family_and_exclusions_come_first() {
    let net = |s: &str| s.parse::<IpNet>().expect("test CIDR");
    let capture = Capture {
        outbound_port: 16001,
        inbound_port: 16006,
        exclude_inbound_ports: vec![15000, 22],
        exclude_outbound_ports: vec![53],
        include_cidrs: Some(vec![net("198.18.0.0/15"), net("fd00::/8")]),
        exclude_cidrs: vec![net("198.18.0.2/32"), net("fd00::2/128")],
        marks: Marks { mesh: 7, app: 8 },
    };
    let v4 = capture.payload(Family::V4);
    let output: Vec<&str> = v4
        .lines()
        .filter(|l| l.starts_with("-A RINGMESH_OUTPUT"))
        .collect();
    assert_eq!(
        output[4..],
        [
            "-A RINGMESH_OUTPUT -d 127.0.0.1/32 -j RETURN",
            "-A RINGMESH_OUTPUT -p tcp --dport 53 -j RETURN",
            "-A RINGMESH_OUTPUT -d 198.18.0.2/32 -j RETURN",
            "-A RINGMESH_OUTPUT -d 198.18.0.0/15 -j RINGMESH_REDIRECT",
        ]
    );
    assert!(v4.contains("-A RINGMESH_OUTPUT -m mark --mark 0x8 -j RETURN"));
    assert!(v4.contains("--dport 22 -j RETURN"));
    assert!(v4.contains("REDIRECT --to-ports 16001"));
    assert!(v4.contains("REDIRECT --to-ports 16006"));

    let v6 = capture.payload(Family::V6);
    assert!(v6.contains("-A RINGMESH_OUTPUT -d ::1/128 -j RETURN"));
    assert!(v6.contains("-A RINGMESH_OUTPUT -d fd00::2/128 -j RETURN"));
    assert!(v6.contains("-A RINGMESH_OUTPUT -d fd00::/8 -j RINGMESH_REDIRECT"));
    assert!(!v6.contains("198.18."), "{v6}");
}

#[test]
fn an_empty_include_list_captures_nothing_outbound() {
    let capture = Capture {
        include_cidrs: Some(Vec::new()),
        ..Capture::default()
    };
    let v4 = capture.payload(Family::V4);
    assert!(!v4.contains("-j RINGMESH_REDIRECT"), "{v4}");
    assert!(v4.contains("-A RINGMESH_INBOUND -p tcp -j RINGMESH_IN_REDIRECT"));
}
