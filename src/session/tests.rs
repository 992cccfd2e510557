use super::*;
use crate::protocol::ByteStr;
use bytes::Bytes;
use std::sync::Arc;

fn limits(max: usize) -> QueueLimits {
    QueueLimits {
        max_messages: max,
        max_bytes: 0,
        qos0_offline: false,
        overflow: crate::config::Overflow::DropNew,
        memory: Default::default(),
    }
}

fn d(qos: QoS, n: u8) -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: ByteStr::from_static("t").unwrap(),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
            properties: Default::default(),
            publisher: Arc::from(""),
            expires_at: None,
        }),
        qos,
        retain: false,
        extra: None,
        seq: 0,
    }
}

fn ids(s: &mut Session) -> Vec<(u16, u8)> {
    std::iter::from_fn(|| s.next_outgoing(std::time::Instant::now()))
        .flat_map(|o| match o {
            Outgoing::Publish {
                packet_id,
                delivery,
                ..
            } => vec![(packet_id, delivery.message.payload[0])],
            Outgoing::PubRel { packet_id } => vec![(packet_id, 255)],
            Outgoing::Run(slice) => slice.messages().iter().map(|m| (0, m.payload[0])).collect(),
        })
        .collect()
}

#[test]
fn window_limits_qos1_and_keeps_order() {
    let mut s = Session::new(limits(100), 2);
    for n in 0..4 {
        assert_eq!(s.enqueue(d(QoS::AtLeastOnce, n), true), Enqueued::Queued);
    }
    assert_eq!(s.enqueue(d(QoS::AtMostOnce, 9), true), Enqueued::Queued);
    assert_eq!(ids(&mut s), [(1, 0), (2, 1)], "window of 2");
    assert_eq!(s.puback(1), Acked::Done);
    assert_eq!(s.puback(1), Acked::Unknown, "a second PUBACK is unknown");
    assert_eq!(ids(&mut s), [(3, 2)]);
    assert_eq!((s.puback(2), s.puback(3)), (Acked::Done, Acked::Done));
    assert_eq!(
        ids(&mut s),
        [(4, 3), (0, 9)],
        "QoS 0 waited behind QoS 1: order kept"
    );
}

#[test]
fn qos2_outbound_handshake_and_resend() {
    let mut s = Session::new(limits(100), 10);
    assert_eq!(s.enqueue(d(QoS::ExactlyOnce, 1), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::ExactlyOnce, 2), true), Enqueued::Queued);
    assert_eq!(ids(&mut s), [(1, 1), (2, 2)]);
    assert_eq!(
        s.puback(1),
        Acked::WrongKind,
        "PUBACK is not an answer to QoS 2"
    );
    assert_eq!(s.pubrec(1, false), Acked::Done);
    assert_eq!(
        s.pubrec(1, false),
        Acked::Done,
        "a repeated PUBREC is answered again"
    );
    assert_eq!(s.pubcomp(2), Acked::WrongKind, "no PUBCOMP before PUBREC");
    assert_eq!(s.pubcomp(3), Acked::Unknown);
    let resend = s.resend();
    assert_eq!(resend.len(), 2);
    assert_eq!(resend[0], Outgoing::PubRel { packet_id: 1 });
    assert!(matches!(
        &resend[1],
        Outgoing::Publish {
            packet_id: 2,
            dup: true,
            ..
        }
    ));
    assert_eq!(s.pubcomp(1), Acked::Done);
    assert_eq!(s.inflight(), 1);
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut s = Session::new(limits(100_000), 2);
    s.next_id = u16::MAX;
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 0), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 1), true), Enqueued::Queued);
    assert_eq!(ids(&mut s), [(u16::MAX, 0), (1, 1)]);
    assert_eq!(s.puback(1), Acked::Done);
    s.next_id = u16::MAX; // wraps onto an id still in flight: skipped
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 2), true), Enqueued::Queued);
    assert_eq!(ids(&mut s), [(1, 2)]);
}

#[test]
fn full_queue_drops_and_reports_the_first_drop_of_an_episode() {
    let mut s = Session::new(limits(2), 1);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 0), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 1), true), Enqueued::Queued);
    assert_eq!(
        s.enqueue(d(QoS::AtMostOnce, 2), true),
        Enqueued::Dropped { first: true }
    );
    assert_eq!(
        s.enqueue(d(QoS::ExactlyOnce, 3), true),
        Enqueued::Dropped { first: false }
    );
    assert_eq!(s.queued(), 2);
    ids(&mut s);
    assert_eq!(s.puback(1), Acked::Done);
    ids(&mut s);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 4), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 5), true), Enqueued::Queued);
    assert_eq!(
        s.enqueue(d(QoS::AtLeastOnce, 6), true),
        Enqueued::Dropped { first: true }
    );
}

#[test]
fn byte_limit_and_offline_qos0_policy() {
    let mut s = Session::new(
        QueueLimits {
            max_messages: 10,
            max_bytes: 2,
            qos0_offline: false,
            overflow: crate::config::Overflow::DropNew,
            memory: Default::default(),
        },
        5,
    );
    assert_eq!(s.enqueue(d(QoS::AtMostOnce, 0), false), Enqueued::Skipped);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 0), false), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 1), false), Enqueued::Queued);
    assert_eq!(
        s.enqueue(d(QoS::AtLeastOnce, 2), false),
        Enqueued::Dropped { first: true }
    );
    let mut s = Session::new(
        QueueLimits {
            max_messages: 10,
            max_bytes: 0,
            qos0_offline: true,
            overflow: crate::config::Overflow::DropNew,
            memory: Default::default(),
        },
        5,
    );
    assert_eq!(s.enqueue(d(QoS::AtMostOnce, 0), false), Enqueued::Queued);
}

#[test]
fn inbound_qos2_is_routed_once() {
    let mut s = Session::new(limits(10), 10);
    assert_eq!(s.receive_qos2(7, 2), Some(true));
    assert_eq!(s.receive_qos2(7, 2), Some(false), "duplicate before PUBREL");
    assert_eq!(s.receive_qos2(8, 2), Some(true));
    assert_eq!(s.receive_qos2(9, 2), None, "a third while two await PUBREL");
    assert_eq!(s.inbound_pending(), 2, "the refused id is not recorded");
    assert!(s.release(8));
    assert!(s.release(7));
    assert!(!s.release(7));
    assert_eq!(
        s.receive_qos2(7, 2),
        Some(true),
        "after PUBREL the id is new again"
    );
}

#[test]
fn take_shared_takes_unfinished_shared_deliveries_and_frees_their_ids() {
    let shared = |qos, n| Delivery {
        extra: DeliveryExtra::new(Default::default(), Some(Arc::from("$share/g/t"))),
        seq: 0,
        ..d(qos, n)
    };
    let mut s = Session::new(limits(100), 4);
    assert_eq!(
        s.enqueue(shared(QoS::AtLeastOnce, 0), true),
        Enqueued::Queued
    ); // in flight, id 1
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 1), true), Enqueued::Queued); // in flight, id 2, not shared
    assert_eq!(
        s.enqueue(shared(QoS::ExactlyOnce, 2), true),
        Enqueued::Queued
    ); // in flight, id 3, then PUBREC'd
    assert_eq!(
        s.enqueue(shared(QoS::ExactlyOnce, 6), true),
        Enqueued::Queued
    ); // in flight, id 4, awaiting PUBREC
    assert_eq!(
        s.enqueue(shared(QoS::AtLeastOnce, 3), true),
        Enqueued::Queued
    ); // queued behind the window
    assert_eq!(
        s.enqueue(shared(QoS::ExactlyOnce, 4), true),
        Enqueued::Queued
    ); // queued, never sent
    assert_eq!(s.enqueue(d(QoS::AtMostOnce, 5), true), Enqueued::Queued); // queued, not shared
    assert_eq!(ids(&mut s), [(1, 0), (2, 1), (3, 2), (4, 6)]);
    assert_eq!(s.pubrec(3, false), Acked::Done);
    let taken: Vec<u8> = s
        .take_shared()
        .iter()
        .map(|d| d.message.payload[0])
        .collect();
    assert_eq!(
        taken,
        [0, 3, 4],
        "QoS 1 in flight, then queued, in order; QoS 2 once sent stays"
    );
    assert_eq!(s.puback(1), Acked::Unknown, "id 1 was freed");
    assert_eq!(s.queued(), 1);
    assert_eq!(s.inflight(), 3, "ids 2, 3 and 4 stay");
    assert_eq!(s.puback(2), Acked::Done);
    assert_eq!(ids(&mut s), [(0, 5)]);
    assert!(s.take_shared().is_empty());
}

#[test]
fn expired_messages_are_discarded_from_the_queue_not_sent() {
    let start = std::time::Instant::now();
    let expiring = |n, secs| {
        let mut x = d(QoS::AtLeastOnce, n);
        Arc::make_mut(&mut x.message).expires_at = Some(Deadline::after(start, secs));
        x
    };
    let mut s = Session::new(limits(100), 10);
    assert_eq!(s.enqueue(expiring(0, 5), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 1), true), Enqueued::Queued);
    assert_eq!(s.enqueue(expiring(2, 20), true), Enqueued::Queued);
    let later = start + std::time::Duration::from_secs(6);
    let mut sent = Vec::new();
    while let Some(Outgoing::Publish { delivery, .. }) = s.next_outgoing(later) {
        sent.push(delivery.message.payload[0]);
        assert_eq!(
            delivery.message.remaining_expiry(later),
            (delivery.message.payload[0] == 2).then_some(14)
        );
    }
    assert_eq!(sent, [1, 2]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn compact_gives_back_a_drained_queue_but_keeps_a_busy_one() {
    let mut s = Session::new(limits(10_000), 10);
    for n in 0..1000 {
        assert_eq!(
            s.enqueue(d(QoS::AtMostOnce, (n % 250) as u8), true),
            Enqueued::Queued
        );
    }
    s.compact();
    assert!(s.queue.capacity() >= 1000, "not empty: kept");
    while s.next_outgoing(std::time::Instant::now()).is_some() {}
    s.compact();
    assert_eq!(s.queue.capacity(), 0);
    assert_eq!(s.queued(), 0);
}

/// A shared run of messages numbered `first..` with the given QoS and RETAIN flags.
fn run_of(first: u8, flags: &[(QoS, bool)]) -> Arc<Run> {
    let messages: Vec<_> = flags
        .iter()
        .zip(first..)
        .map(|(&(qos, retain), n)| {
            let mut m = d(qos, n).message;
            Arc::make_mut(&mut m).retain = retain;
            m
        })
        .collect();
    Run::new(&messages)
}

fn grant(qos: QoS, retain_as_published: bool) -> RunGrant {
    RunGrant {
        qos,
        retain_as_published,
        extra: None,
    }
}

#[test]
fn a_run_is_queued_whole_and_comes_out_message_by_message_in_order() {
    use QoS::*;
    let mut s = Session::new(limits(100), 10);
    assert_eq!(s.enqueue(d(AtMostOnce, 0), true), Enqueued::Queued);
    let run = run_of(
        1,
        &[
            (AtLeastOnce, true),
            (AtMostOnce, true),
            (ExactlyOnce, false),
        ],
    );
    assert!(s.offer_run(&run, &grant(AtLeastOnce, true), true));
    assert_eq!(s.enqueue(d(AtMostOnce, 9), true), Enqueued::Queued);
    assert_eq!(s.queued(), 5);
    assert_eq!(s.queue.bytes(), 5, "one payload byte each");
    let now = std::time::Instant::now();
    let mut got = Vec::new();
    while let Some(Outgoing::Publish {
        packet_id,
        delivery,
        ..
    }) = s.next_outgoing(now)
    {
        got.push((
            delivery.message.payload[0],
            delivery.qos,
            delivery.retain,
            packet_id,
        ));
    }
    assert_eq!(
        got,
        [
            (0, AtMostOnce, false, 0),
            (1, AtLeastOnce, true, 1),
            (2, AtMostOnce, true, 0),
            (3, AtLeastOnce, false, 2), // QoS 2 message, QoS 1 grant
            (9, AtMostOnce, false, 0),
        ]
    );
    assert_eq!((s.queued(), s.queue.bytes(), s.inflight()), (0, 0, 2));
    assert_eq!(Arc::strong_count(&run), 1, "the queue let go of the run");
}

#[test]
fn a_run_that_does_not_fit_or_finds_the_session_offline_is_refused_whole() {
    let run = run_of(0, &[(QoS::AtLeastOnce, false); 3]);
    let mut s = Session::new(limits(4), 10);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 9), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 9), true), Enqueued::Queued);
    assert!(
        !s.offer_run(&run, &grant(QoS::AtLeastOnce, false), true),
        "2 + 3 > 4"
    );
    assert!(
        !s.offer_run(&run, &grant(QoS::AtLeastOnce, false), false),
        "offline"
    );
    assert_eq!(s.queued(), 2, "nothing of a refused run is queued");

    let mut by_bytes = Session::new(
        QueueLimits {
            max_messages: 100,
            max_bytes: 2,
            qos0_offline: false,
            overflow: crate::config::Overflow::DropNew,
            memory: Default::default(),
        },
        10,
    );
    assert!(
        !by_bytes.offer_run(&run, &grant(QoS::AtLeastOnce, false), true),
        "3 bytes > 2"
    );
    assert_eq!(by_bytes.queued(), 0);
    let fits = Session::new(limits(5), 10).offer_run(&run, &grant(QoS::AtMostOnce, false), true);
    assert!(fits, "exactly up to the limit");
}

#[test]
fn qos0_runs_come_out_as_slices_within_the_budget() {
    let run = run_of(0, &[(QoS::AtLeastOnce, false); 5]);
    let mut s = Session::new(limits(100), 10);
    assert!(s.offer_run(&run, &grant(QoS::AtMostOnce, false), true));
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 7), true), Enqueued::Queued);
    let now = std::time::Instant::now();
    let one = wire_estimate(&d(QoS::AtMostOnce, 0).message);
    let taken = |o: Option<Outgoing>| match o {
        Some(Outgoing::Run(slice)) => slice.messages().iter().map(|m| m.payload[0]).collect(),
        other => panic!("expected a slice, got {other:?}"),
    };
    let first: Vec<u8> = taken(s.next_outgoing_within(now, 2 * one));
    assert_eq!(first, [0, 1], "as many as the budget holds");
    assert_eq!(s.queued(), 4);
    let second: Vec<u8> = taken(s.next_outgoing_within(now, 0));
    assert_eq!(second, [2], "at least one, whatever the budget");
    let rest: Vec<u8> = taken(s.next_outgoing_within(now, usize::MAX));
    assert_eq!(rest, [3, 4], "never past the run");
    assert!(
        matches!(
            s.next_outgoing_within(now, usize::MAX),
            Some(Outgoing::Publish { packet_id: 1, .. })
        ),
        "a single QoS 1 message comes out as itself"
    );
    assert_eq!((s.queued(), s.queue.bytes()), (0, 0));
}

#[test]
fn a_slice_skips_messages_that_expired_while_queued() {
    let start = std::time::Instant::now();
    let mut messages: Vec<_> = (0..3).map(|n| d(QoS::AtMostOnce, n).message).collect();
    Arc::make_mut(&mut messages[1]).expires_at = Some(Deadline::after(start, 5));
    let run = Run::new(&messages);
    let mut s = Session::new(limits(100), 10);
    assert!(s.offer_run(&run, &grant(QoS::AtMostOnce, false), true));
    let Some(Outgoing::Run(slice)) = s.next_outgoing_within(start, usize::MAX) else {
        panic!("a QoS 0 run comes out as a slice");
    };
    let live = |now| slice.live(now).map(|m| m.payload[0]).collect::<Vec<_>>();
    assert_eq!(live(start), [0, 1, 2]);
    assert_eq!(live(start + std::time::Duration::from_secs(6)), [0, 2]);
}

#[test]
fn take_shared_leaves_runs_and_compact_gives_back_a_drained_one() {
    let run = run_of(0, &[(QoS::AtMostOnce, false); 100]);
    let mut s = Session::new(limits(10_000), 10);
    for _ in 0..100 {
        assert!(s.offer_run(&run, &grant(QoS::AtMostOnce, false), true));
    }
    assert!(s.take_shared().is_empty());
    assert_eq!(s.queued(), 10_000);
    s.compact();
    assert!(s.queue.capacity() >= 100, "not empty: kept");
    while s
        .next_outgoing_within(std::time::Instant::now(), 1000)
        .is_some()
    {}
    s.compact();
    assert_eq!((s.queue.capacity(), s.queued()), (0, 0));
}

#[test]
fn a_compacted_message_is_equal_and_holds_nothing_of_the_buffer_it_came_from() {
    let read = Bytes::from(vec![b'a'; 16 * 1024]);
    let properties = crate::protocol::Properties {
        user_properties: vec![(
            ByteStr::try_from_bytes(read.slice(10..12)).unwrap(),
            ByteStr::try_from_bytes(read.slice(20..23)).unwrap(),
        )],
        message_expiry_interval: Some(60),
        ..Default::default()
    };
    let m = Message {
        topic: ByteStr::try_from_bytes(read.slice(0..5)).unwrap(),
        payload: read.slice(100..110),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: properties.into(),
        publisher: Arc::from("p"),
        expires_at: None,
    };
    let c = m.compacted();
    assert_eq!(c, m);
    let range = read.as_ptr_range();
    let inside = |p: *const u8| range.contains(&p);
    assert!(!inside(c.topic.as_ptr()), "topic");
    assert!(!inside(c.payload.as_ptr()), "payload");
    let (k, v) = &c.properties.user_properties[0];
    assert!(!inside(k.as_ptr()) && !inside(v.as_ptr()), "user property");
}

/// A kept session journals each step of its QoS 1/2 deliveries, with identifiers its numbers
/// give; QoS 0 is not kept; what was queued before it was kept is numbered when it is.
#[test]
fn a_kept_session_journals_every_step_of_its_deliveries() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink: Sink = {
        let log = log.clone();
        Arc::new(move |j| {
            log.lock().unwrap().push(j);
            0
        })
    };
    let take = |log: &std::sync::Mutex<Vec<Journal>>| {
        std::mem::take(&mut *log.lock().unwrap())
            .into_iter()
            .map(|j| match j {
                Journal::Queued { seq, packet_id, .. } => format!("q{seq}/{packet_id}"),
                Journal::Released { seq, packet_id } => format!("r{seq}/{packet_id}"),
                Journal::Done { seq } => format!("d{seq}"),
                Journal::Inbound { packet_id, pending } => format!("i{packet_id}/{pending}"),
            })
            .collect::<Vec<_>>()
    };
    let mut s = Session::new(limits(100), 10);
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 0), true), Enqueued::Queued);
    s.keep(sink);
    assert_eq!(take(&log), ["q1/0"], "numbered when kept");
    assert_eq!(s.enqueue(d(QoS::AtMostOnce, 1), true), Enqueued::Queued);
    assert_eq!(s.enqueue(d(QoS::ExactlyOnce, 2), true), Enqueued::Queued);
    assert_eq!(take(&log), ["q2/0"], "QoS 0 is not kept");
    assert_eq!(
        ids(&mut s),
        [(packet_id_of(1), 0), (0, 1), (packet_id_of(2), 2)]
    );
    assert!(take(&log).is_empty(), "sending writes nothing");
    assert_eq!(s.puback(packet_id_of(1)), Acked::Done);
    assert_eq!(s.pubrec(packet_id_of(2), false), Acked::Done);
    assert_eq!(s.pubcomp(packet_id_of(2)), Acked::Done);
    assert_eq!(s.receive_qos2(7, 10), Some(true));
    assert_eq!(s.receive_qos2(7, 10), Some(false));
    assert!(s.release(7));
    assert_eq!(
        take(&log),
        [
            "d1",
            &format!("r2/{}", packet_id_of(2)),
            "d2",
            "i7/true",
            "i7/false"
        ]
    );
    s.unkeep();
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 3), true), Enqueued::Queued);
    assert!(take(&log).is_empty(), "no longer kept");
}

#[test]
fn a_delivery_is_still_24_bytes() {
    assert_eq!(std::mem::size_of::<Delivery>(), 24);
}

#[test]
fn a_full_queue_drops_its_oldest_message_with_drop_oldest() {
    let mut s = Session::new(
        QueueLimits {
            max_messages: 3,
            max_bytes: 0,
            qos0_offline: true,
            overflow: crate::config::Overflow::DropOldest,
            memory: Default::default(),
        },
        10,
    );
    for n in 0..3 {
        assert_eq!(s.enqueue(d(QoS::AtLeastOnce, n), false), Enqueued::Queued);
    }
    assert_eq!(
        s.enqueue(d(QoS::AtLeastOnce, 3), false),
        Enqueued::Displaced {
            dropped: 1,
            first: true
        }
    );
    assert_eq!(
        s.enqueue(d(QoS::AtMostOnce, 4), false),
        Enqueued::Displaced {
            dropped: 1,
            first: false
        },
        "the same episode"
    );
    assert_eq!(s.queued(), 3);
    let sent: Vec<u8> = ids(&mut s).into_iter().map(|(_, n)| n).collect();
    assert_eq!(sent, [2, 3, 4], "the newest three, in order");
}

#[test]
fn backpressure_queues_past_the_limit_for_a_connected_subscriber_until_it_stalls() {
    let mut s = Session::new(
        QueueLimits {
            max_messages: 4,
            max_bytes: 0,
            qos0_offline: false,
            overflow: crate::config::Overflow::Backpressure,
            memory: Default::default(),
        },
        1,
    );
    let offer = |s: &mut Session, qos, n| {
        let press = s.may_press(true);
        s.offer(qos, 1, true, press, || d(qos, n))
    };
    for n in 0..4 {
        assert_eq!(offer(&mut s, QoS::AtLeastOnce, n), Enqueued::Queued);
    }
    assert!(!s.has_room());
    for n in 4..8 {
        assert_eq!(offer(&mut s, QoS::AtLeastOnce, n), Enqueued::Pressed);
    }
    assert_eq!(
        offer(&mut s, QoS::AtMostOnce, 8),
        Enqueued::Dropped { first: true },
        "QoS 0 never holds a publisher back"
    );
    // Its publishers waited long enough: it drops until it has room.
    s.stall();
    assert_eq!(
        offer(&mut s, QoS::AtLeastOnce, 9),
        Enqueued::Dropped { first: false }
    );
    // Offline, the limit is the limit.
    let mut offline = Session::new(s.limits.clone(), 1);
    for n in 0..4 {
        assert_eq!(
            offline.enqueue(d(QoS::AtLeastOnce, n), false),
            Enqueued::Queued
        );
    }
    assert_eq!(
        offline.enqueue(d(QoS::AtLeastOnce, 4), false),
        Enqueued::Dropped { first: true }
    );
    // Room again below three quarters of the limit: 8 queued, one goes into the window.
    assert_eq!(ids(&mut s).len(), 1);
    assert!(!s.has_room(), "7 queued");
    for id in 1..=5u16 {
        assert_eq!(s.puback(id), Acked::Done);
        let _ = s.next_outgoing(Instant::now());
    }
    assert_eq!(s.queued(), 2);
    assert!(s.has_room(), "2 queued, below 3 of 4");
    assert!(s.may_press(true), "the stall is over");
}

#[test]
fn only_restored_deliveries_go_with_dup_after_a_restart() {
    let mut s = Session::new(limits(10), 10);
    let restored = |seq: u32, delivery: Delivery| {
        Resumed::Whole(Restored {
            delivery: Delivery { seq, ..delivery },
            packet_id: 0,
            released: false,
        })
    };
    let start = Instant::now();
    let mut expiring = d(QoS::AtLeastOnce, 1);
    Arc::make_mut(&mut expiring.message).expires_at = Some(Deadline::after(start, 1));
    let sink: Sink = Arc::new(|_| 0);
    // Two queued deliveries come back: the first has expired by the time it could go.
    s.restore(
        vec![restored(1, expiring), restored(2, d(QoS::AtLeastOnce, 2))],
        Vec::new(),
        sink,
    );
    assert_eq!(s.enqueue(d(QoS::AtLeastOnce, 3), true), Enqueued::Queued);
    let later = start + std::time::Duration::from_secs(5);
    let mut dups = Vec::new();
    while let Some(Outgoing::Publish { delivery, dup, .. }) = s.next_outgoing(later) {
        dups.push((delivery.message.payload[0], dup));
    }
    assert_eq!(
        dups,
        [(2, true), (3, false)],
        "the restored one may have been in flight; the new one was not"
    );
}
