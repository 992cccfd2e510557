//! The broker without connections: sessions attached through their [`Link`], messages routed
//! straight in.

use super::Broker;
use crate::config::Config;
use crate::protocol::{ByteStr, QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use crate::session::Message;
use std::sync::Arc;

/// A topic of `levels` levels.
fn deep(levels: usize) -> String {
    vec!["a"; levels].join("/")
}

/// The broker itself, without the wire's 65,535-byte strings: a session subscribes to a filter
/// of 100,000 levels, a message on a topic that deep matches it, and the session's end removes
/// it (the paths that once recursed once per level).
#[tokio::test]
async fn the_broker_subscribes_matches_and_removes_a_filter_of_a_hundred_thousand_levels() {
    let mut config = Config::default();
    config.limits.max_topic_levels = 200_000;
    config.limits.max_topic_length = usize::MAX;
    let broker = Broker::new(Arc::new(config));
    let topic = deep(100_000);
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAtSubscribe,
    };
    let link = broker
        .attach(
            "deep".into(),
            true,
            10,
            0,
            crate::broker::Owner::anonymous(),
        )
        .link;
    for filter in [topic.clone(), format!("{}/#", vec!["+"; 99_999].join("/"))] {
        let granted = link.subscribe(&filter, options, None, None);
        assert_eq!(granted, Ok(ReasonCode(0)));
    }
    let message = |retain| Message {
        topic: ByteStr::try_from(topic.as_str()).unwrap(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain,
        properties: Default::default(),
        publisher: Arc::from("p"),
        expires_at: None,
    };
    assert_eq!(broker.publish(message(true)), 1, "one session matched");
    assert_eq!(broker.queue_depth("deep"), Some((1, 0)));
    assert_eq!(link.unsubscribe(&topic), Ok(true));
    assert_eq!(
        broker.publish(message(false)),
        1,
        "the wildcard filter still matches"
    );
    link.detach();
    assert!(!broker.has_session("deep"));
    assert_eq!(
        broker.publish(message(false)),
        0,
        "the session's end removed its filter"
    );
    assert_eq!(broker.retained_count(), 1);
    drop(broker);
}
