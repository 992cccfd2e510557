//! Topic wildcards end to end (4.7): `+` and `#`, the examples of section 4.7, and topics that
//! start with `$`.

mod support;

use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{QoS, ReasonCode};
use support::*;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, V5];

/// Topics published in every test, in this order.
const TOPICS: &[&str] = &[
    "sport",
    "sport/",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
    "/finance",
    "Accounts",
    "$SYS/monitor/Clients",
    "$SYS",
];

/// One subscriber per filter, and the topics (of [`TOPICS`]) it must receive, in order.
const EXPECTED: &[(&str, &[&str])] = &[
    // 4.7.1.2: `#` matches the parent level and any number of levels below it.
    (
        "sport/tennis/player1/#",
        &[
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ],
    ),
    (
        "sport/#",
        &[
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ],
    ),
    (
        "#",
        &[
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
            "/finance",
            "Accounts",
        ],
    ),
    // 4.7.1.3: `+` matches exactly one level, including an empty one.
    ("sport/tennis/+", &["sport/tennis/player1"]),
    ("sport/+", &["sport/"]),
    (
        "+/tennis/#",
        &[
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ],
    ),
    ("+/+", &["sport/", "/finance"]),
    ("/+", &["/finance"]),
    ("+", &["sport", "Accounts"]),
    // 4.7.3: case sensitive, no normalisation [MQTT-4.7.3-4].
    ("ACCOUNTS", &[]),
    ("Accounts", &["Accounts"]),
    // 4.7.2: `$` topics are matched only by filters that do not start with a wildcard.
    ("+/monitor/Clients", &[]),
    ("$SYS/#", &["$SYS/monitor/Clients", "$SYS"]),
    ("$SYS/monitor/+", &["$SYS/monitor/Clients"]),
    // `+/#`: `#` also matches the parent, so every topic not starting with `$`.
    (
        "+/#",
        &[
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
            "/finance",
            "Accounts",
        ],
    ),
];

#[tokio::test]
async fn spec_examples_of_section_4_7_end_to_end() {
    let b = start().await;
    for v in VERSIONS {
        let mut subs = Vec::new();
        for (i, (filter, _)) in EXPECTED.iter().enumerate() {
            let mut s = Raw::connect(b.addr, v, &format!("w{i}"), true).await;
            assert_eq!(s.subscribe(filter, QoS::AtLeastOnce).await, [1], "{filter}");
            subs.push(s);
        }
        let mut publisher = Raw::connect(b.addr, v, "w-pub", true).await;
        for (i, topic) in TOPICS.iter().enumerate() {
            publisher
                .publish_acked(
                    topic,
                    topic.as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    i as u16 + 1,
                )
                .await;
        }
        for ((filter, want), s) in EXPECTED.iter().zip(&mut subs) {
            let got = s.drain().await;
            // [MQTT-3.3.2-3]: the topic sent is the one published, which the filter matches.
            assert!(got.iter().all(|p| *p.topic.as_bytes() == p.payload));
            let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
            assert_eq!(topics, *want, "{v:?} filter {filter:?}");
        }
        for s in subs {
            s.disconnect().await;
        }
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn wildcards_at_the_first_level_do_not_match_dollar_topics() {
    let b = start().await;
    let mut all = Raw::connect(b.addr, V5, "dollar-all", true).await;
    all.subscribe_with(
        1,
        &[
            ("#", sub_opts(QoS::AtMostOnce)),
            ("+/monitor/Clients", sub_opts(QoS::AtMostOnce)),
            ("+/+/+", sub_opts(QoS::AtMostOnce)),
        ],
    )
    .await;
    let mut publisher = Raw::connect(b.addr, V5, "dollar-pub", true).await;
    // [MQTT-4.7.2-1]: no subscription matched, and the v5 PUBACK says so.
    let reason = publisher
        .publish_acked("$SYS/monitor/Clients", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    all.expect_nothing().await;

    let mut sys = Raw::connect(b.addr, V3_1_1, "dollar-sys", true).await;
    assert_eq!(sys.subscribe("$SYS/#", QoS::AtMostOnce).await, [0]);
    let reason = publisher
        .publish_acked("$SYS/monitor/Clients", b"y", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(payloads(&sys.drain().await), ["y"]);
    all.expect_nothing().await;
    // A `$` later in the topic is an ordinary character.
    publisher
        .publish_acked("a/$b/c", b"z", QoS::AtLeastOnce, false, 3)
        .await;
    let got = all.drain().await;
    assert_eq!(
        payloads(&got),
        ["z"],
        "one copy for `#` and `+/+/+` together"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn retained_dollar_topics_are_not_sent_to_leading_wildcards() {
    let b = start().await;
    let mut publisher = Raw::connect(b.addr, V3_1_1, "rd-pub", true).await;
    for (i, topic) in ["$SYS/uptime", "$internal", "plain/one", "plain"]
        .iter()
        .enumerate()
    {
        publisher
            .publish_acked(
                topic,
                topic.as_bytes(),
                QoS::AtLeastOnce,
                true,
                i as u16 + 1,
            )
            .await;
    }
    for (filter, want) in [
        ("#", vec!["plain", "plain/one"]),
        ("+", vec!["plain"]),
        ("+/+", vec!["plain/one"]),
        ("$SYS/#", vec!["$SYS/uptime"]),
        ("$internal", vec!["$internal"]),
    ] {
        let mut s = Raw::connect(b.addr, V5, "rd-sub", true).await;
        s.subscribe(filter, QoS::AtMostOnce).await;
        let mut got = payloads(&s.drain().await);
        got.sort();
        assert_eq!(got, want, "filter {filter:?} [MQTT-4.7.2-1]");
        s.disconnect().await;
    }
    b.server.shutdown().await;
}
