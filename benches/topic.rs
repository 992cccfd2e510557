//! Topic matching micro-benchmarks (issue 4): one lookup in a trie of 100,000 subscriptions
//! (mixed exact, `+` and `#` filters), and subscribe/unsubscribe churn on that trie.

use criterion::{Criterion, criterion_group, criterion_main};
use roost::topic::SubscriptionTrie;
use std::hint::black_box;

const SUBSCRIPTIONS: u32 = 100_000;

/// Filter `i`: 70 % exact device topics, 20 % with `+` for the device kind, 10 % a `#` on a
/// site (100 sites, so each site has ~100 `#` subscribers).
fn filter(i: u32) -> String {
    match i % 10 {
        0 => format!("site/{}/#", (i / 10) % 100),
        1 | 2 => format!("site/{}/+/{i}/temp", i % 100),
        _ => format!("site/{}/dev/{i}/temp", i % 100),
    }
}

fn trie() -> SubscriptionTrie<u32, u8> {
    let mut t = SubscriptionTrie::new();
    for i in 0..SUBSCRIPTIONS {
        t.insert(&filter(i), i, 0);
    }
    t
}

fn lookup(c: &mut Criterion) {
    let t = trie();
    let mut g = c.benchmark_group("topic/100k_subscriptions");
    for (name, topic) in [
        ("exact_device", "site/43/dev/12343/temp"),
        ("plus_device", "site/41/dev/12341/temp"),
        ("site_only", "site/42/dev/999999/temp"),
        ("other_tree", "factory/1/line/2"),
    ] {
        let mut matched = 0;
        t.for_each_match(topic, |_, _| matched += 1);
        g.bench_function(format!("match_{name}_{matched}_hits"), |b| {
            b.iter(|| {
                let mut n = 0u32;
                t.for_each_match(black_box(topic), |_, _| n += 1);
                n
            })
        });
    }
    g.finish();
}

fn churn(c: &mut Criterion) {
    let mut t = trie();
    let mut i = SUBSCRIPTIONS;
    c.bench_function("topic/100k_subscriptions/subscribe_then_unsubscribe", |b| {
        b.iter(|| {
            let f = filter(i);
            t.insert(&f, i, 0);
            t.remove(&f, &i);
            i = i.wrapping_add(1);
        })
    });
}

criterion_group!(benches, lookup, churn);
criterion_main!(benches);
