//! Tests of SCRAM-SHA-256: the RFC 7677 vector, full exchanges, and every malformed or
//! tampered message the server must refuse without panicking.

use super::*;
use crate::auth::Methods;

const RFC_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// The RFC 7677 section 3 user: "user" with password "pencil".
fn rfc_authenticator() -> ScramAuthenticator {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let creds = ScramCredentials::from_password("pencil", &salt, 4096).unwrap();
    ScramAuthenticator::new(HashMap::from([("user".to_owned(), creds)])).unwrap()
}

/// Built once: PBKDF2 makes the RFC user slow to derive in a debug build.
static RFC_AUTH: std::sync::LazyLock<ScramAuthenticator> =
    std::sync::LazyLock::new(rfc_authenticator);

fn rfc_exchange() -> ScramExchange {
    RFC_AUTH.exchange(Some(RFC_NONCE.to_owned()))
}

fn server_data(step: Step) -> String {
    match step {
        Step::Continue(data) => String::from_utf8(data).unwrap(),
        other => panic!("expected Continue, got {other:?}"),
    }
}

fn failure(step: Step) -> &'static str {
    match step {
        Step::Failure(reason) => reason,
        other => panic!("expected Failure, got {other:?}"),
    }
}

/// A SCRAM client (RFC 5802 section 3): client-final-message for `server_first`, and the
/// server-final-message it expects back.
fn client_final(gs2: &str, password: &str, bare: &str, server_first: &str) -> (String, String) {
    let attr = |i: usize| server_first.split(',').nth(i).unwrap()[2..].to_owned();
    let (nonce, salt, iterations) = (attr(0), BASE64.decode(attr(1)).unwrap(), attr(2));
    let salted = salted_password(password, &salt, iterations.parse().unwrap());
    let client_key = hmac(&salted, b"Client Key");
    let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2));
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&Sha256::digest(client_key), auth_message.as_bytes());
    let proof: Key = std::array::from_fn(|i| client_key[i] ^ signature[i]);
    let verifier = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
    (client_final, format!("v={}", BASE64.encode(verifier)))
}

/// Runs a whole exchange as `user_escaped`/`password` with a random client nonce.
fn run(exchange: &mut dyn Exchange, gs2: &str, user_escaped: &str, password: &str) -> Step {
    let bare = format!("n={user_escaped},r={}", fresh_nonce().unwrap());
    let server_first = server_data(exchange.step(format!("{gs2}{bare}").as_bytes()));
    let (final_msg, expected) = client_final(gs2, password, &bare, &server_first);
    let step = exchange.step(final_msg.as_bytes());
    if let Step::Success { data, .. } = &step {
        assert_eq!(
            data.as_deref(),
            Some(expected.as_bytes()),
            "server signature"
        );
    }
    step
}

#[test]
fn rfc7677_test_vector() {
    let mut ex = rfc_exchange();
    assert_eq!(server_data(ex.step(RFC_FIRST.as_bytes())), RFC_SERVER_FIRST);
    let success = Step::Success {
        data: Some(RFC_SERVER_FINAL.as_bytes().to_vec()),
        user: "user".to_owned(),
    };
    assert_eq!(ex.step(RFC_FINAL.as_bytes()), success);
    assert_eq!(failure(ex.step(b"")), "SCRAM exchange already finished");
}

#[test]
fn full_exchange_through_methods_with_random_nonces() {
    let mut methods = Methods::new();
    methods.insert(SCRAM_SHA_256, Box::new(RFC_AUTH.clone()));
    assert!(methods.start("SCRAM-SHA-1").is_none() && methods.start("scram-sha-256").is_none());
    let mut ex = methods.start(SCRAM_SHA_256).unwrap();
    let step = run(ex.as_mut(), "n,,", "user", "pencil");
    assert!(matches!(step, Step::Success { user, .. } if user == "user"));
    // "y": the client could bind the channel but believes the server cannot.
    let mut ex = methods.start(SCRAM_SHA_256).unwrap();
    assert!(matches!(
        run(ex.as_mut(), "y,,", "user", "pencil"),
        Step::Success { .. }
    ));
}

#[test]
fn empty_initial_response_gets_an_empty_challenge_once() {
    let mut ex = rfc_exchange();
    assert_eq!(ex.step(b""), Step::Continue(Vec::new()));
    assert_eq!(server_data(ex.step(RFC_FIRST.as_bytes())), RFC_SERVER_FIRST);
    let mut ex = rfc_exchange();
    ex.step(b"");
    assert_eq!(failure(ex.step(b"")), MALFORMED_FIRST);
}

#[test]
fn escaped_user_names_are_decoded() {
    let creds = ScramCredentials::from_password("pw", b"salt", 4096).unwrap();
    let users = HashMap::from([("a,b=c".to_owned(), creds)]);
    let mut ex = ScramAuthenticator::new(users)
        .unwrap()
        .start(SCRAM_SHA_256)
        .unwrap();
    let step = run(ex.as_mut(), "n,,", "a=2Cb=3Dc", "pw");
    assert!(matches!(step, Step::Success { user, .. } if user == "a,b=c"));
}

#[test]
fn wrong_password_fails() {
    let mut ex = RFC_AUTH.start(SCRAM_SHA_256).unwrap();
    let reason = failure(run(ex.as_mut(), "n,,", "user", "pencil2"));
    assert_eq!(reason, "invalid client proof (wrong password?)");
}

#[test]
fn tampered_final_messages_fail() {
    let tampered = [
        (
            RFC_FINAL.replacen("NEkqO%", "NEkqP%", 1),
            "nonce does not match",
        ),
        (RFC_FINAL.replacen("k0,", "k1,", 1), "nonce does not match"),
        (
            RFC_FINAL.replacen("biws", "eSws", 1),
            "channel binding does not repeat the gs2-header",
        ),
        (
            RFC_FINAL.replacen("p=dHzb", "p=dHzc", 1),
            "invalid client proof (wrong password?)",
        ),
        (
            RFC_FINAL.replacen("AndVQ=", "AndVQ", 1),
            "client proof is not 32 bytes in base64",
        ),
    ];
    for (msg, reason) in tampered {
        let mut ex = rfc_exchange();
        ex.step(RFC_FIRST.as_bytes());
        assert_eq!(failure(ex.step(msg.as_bytes())), reason, "{msg}");
    }
}

#[test]
fn unknown_user_looks_known_until_the_proof() {
    let first = |auth: &ScramAuthenticator, user: &str| {
        let mut ex = auth.exchange(Some(RFC_NONCE.to_owned()));
        (
            server_data(ex.step(format!("n,,n={user},r=abc").as_bytes())),
            ex,
        )
    };
    let (server_first, mut ex) = first(&RFC_AUTH, "mallory");
    assert!(server_first.ends_with(",i=4096"), "{server_first}");
    let again = first(&RFC_AUTH, "mallory").0;
    assert_eq!(again, server_first, "same fake salt every time");
    let eve = first(&RFC_AUTH, "eve").0;
    assert_ne!(eve, server_first, "fake salt depends on the name");
    let (msg, _) = client_final("n,,", "pencil", "n=mallory,r=abc", &server_first);
    assert_eq!(failure(ex.step(msg.as_bytes())), "unknown user");

    let creds = |iterations| ScramCredentials {
        iterations,
        ..RFC_AUTH.store.users["user"].clone()
    };
    let users = [("a", 4096), ("b", 9999), ("c", 9999)].map(|(u, i)| (u.to_owned(), creds(i)));
    let auth = ScramAuthenticator::new(HashMap::from(users)).unwrap();
    assert!(
        first(&auth, "mallory").0.ends_with(",i=9999"),
        "most users' count"
    );
}

#[test]
fn malformed_first_messages_fail() {
    let cases: &[&[u8]] = &[
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=user,r=abc",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user,r=",
        b"n,,n=us=er,r=abc",
        b"n,,n=user=2,r=abc",
        b"n,,n=\xc3\xa9,r=abc",
        b"n,,n=\xff,r=abc",
        b"n,,n=user,r=a\x01b",
    ];
    for case in cases {
        let reason = failure(rfc_exchange().step(case));
        assert!(!reason.is_empty(), "{}", String::from_utf8_lossy(case));
    }
    let refused = [
        (
            "p=tls-unique,,n=user,r=abc",
            "channel binding is not supported",
        ),
        (
            "n,a=admin,n=user,r=abc",
            "authorisation identity is not supported",
        ),
        (
            "n,,m=ext,n=user,r=abc",
            "mandatory extension is not supported",
        ),
    ];
    for (msg, reason) in refused {
        assert_eq!(failure(rfc_exchange().step(msg.as_bytes())), reason);
    }
    let no_nonce = RFC_AUTH.exchange(None).step(RFC_FIRST.as_bytes());
    assert_eq!(failure(no_nonce), "the OS random number generator failed");
}

#[test]
fn malformed_final_messages_fail() {
    let prefix = RFC_FINAL.rsplit_once(',').unwrap().0;
    let cases = [
        String::new(),
        "p=abc".to_owned(),
        prefix.to_owned(),
        format!("{prefix},p=@@@"),
        format!("{prefix},x=abc"),
        RFC_FINAL.replacen("c=", "x=", 1),
        "r=abc,c=biws,p=AAAA".to_owned(),
    ];
    for case in cases {
        let mut ex = rfc_exchange();
        ex.step(RFC_FIRST.as_bytes());
        assert!(!failure(ex.step(case.as_bytes())).is_empty(), "{case}");
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_first_messages_never_panic(a: Vec<u8>, b: Vec<u8>) {
        let mut ex = RFC_AUTH.exchange(Some(RFC_NONCE.to_owned()));
        for data in [&a, &b, &a] {
            let _ = ex.step(data);
        }
    }

    #[test]
    fn arbitrary_final_messages_never_panic(msg in "[a-z=,A-Z0-9+/%$)]{0,120}") {
        let mut ex = RFC_AUTH.exchange(Some(RFC_NONCE.to_owned()));
        ex.step(RFC_FIRST.as_bytes());
        let _ = ex.step(msg.as_bytes());
        let _ = ex.step(msg.as_bytes());
    }
}

#[test]
fn credential_string_round_trips() {
    let creds = ScramCredentials::generate("pencil", 4096).unwrap();
    let text = creds.to_string();
    assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
    assert_eq!(text.parse::<ScramCredentials>().unwrap(), creds);
    let rfc = RFC_AUTH.store.users["user"].to_string();
    assert!(
        rfc.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
        "{rfc}"
    );
    assert!(!format!("{creds:?}").contains(&BASE64.encode(creds.server_key)));
}

#[test]
fn invalid_credentials_are_refused() {
    let good = RFC_AUTH.store.users["user"].to_string();
    let (head, keys) = good.rsplit_once('$').unwrap();
    let bad = [
        String::new(),
        good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
        good.replacen("$4096:", "$0:", 1),
        good.replacen("$4096:", "$x:", 1),
        good.replacen(":W22", ":!22", 1),
        format!("{head}${}", &keys[4..]),
        format!("{head}$AAAA:AAAA"),
        head.to_owned(),
    ];
    for s in bad {
        assert!(s.parse::<ScramCredentials>().is_err(), "{s}");
    }
    assert!(ScramCredentials::from_password("caf\u{e9}", b"salt", 4096).is_err());
    assert!(ScramCredentials::from_password("pw", b"", 4096).is_err());
    assert!(ScramCredentials::from_password("pw", b"salt", 0).is_err());
    let creds = ScramCredentials::from_password("pw", b"salt", 1).unwrap();
    let users = HashMap::from([("bad\tname".to_owned(), creds)]);
    assert!(matches!(
        ScramAuthenticator::new(users),
        Err(ScramError::UserName(_))
    ));
}
