#!/usr/bin/env python3
"""Interoperability with a second, independent MQTT 5 client stack: paho-mqtt 2.x for Python.

Starts a real `roost` (release build) on a free port with a temporary config and checks, with
paho-mqtt clients speaking MQTT 5.0: shared subscriptions (round robin), User Properties and
Content Type, Message Expiry on a persistent session, Topic Aliases from a client, and
request/response with Response Information. One PASS/FAIL line per check, then
"N passed, M failed"; exits 1 on any failure, 2 if it cannot run at all.
Every wait is bounded by a timeout and the broker is always stopped.

Like interop-mosquitto.sh it runs `cargo build --release` first (a no-op when the binary is
up to date); `--no-build` uses target/release/roost as it is.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import paho.mqtt
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError:
    print("interop: paho-mqtt is missing (python3 -m pip install 'paho-mqtt>=2,<3')",
          file=sys.stderr)
    sys.exit(2)
if not paho.mqtt.__version__.startswith("2."):
    print(f"interop: paho-mqtt 2.x needed, found {paho.mqtt.__version__}", file=sys.stderr)
    sys.exit(2)

BINARY = "target/release/roost"
HOST = "127.0.0.1"
WAIT = 5.0  # seconds any single event (CONNACK, SUBACK, PUBACK, a message) may take

CONFIG = """\
[[listeners]]
bind = "127.0.0.1:{port}"

[shared_subscriptions]
available = true
strategy = "round_robin"

[mqtt5]
response_information_prefix = "responses/"
"""


class CheckFailed(Exception):
    pass


def props(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop(properties, name, default=None):
    return getattr(properties, name, default) if properties is not None else default


class Client:
    """A paho MQTT 5 client on its own network thread; everything it receives is recorded under
    one condition variable, so a check can wait for any state with a timeout."""

    def __init__(self, name, port, clean_start=True, connect_properties=None):
        self.id = f"paho-{name}"
        self.port = port
        self.cond = threading.Condition()
        self.connack = None  # (session_present, reason code, properties)
        self.disconnected = None  # (reason code, properties) once the connection is gone
        self.messages = []
        self.subacks = {}  # mid -> list of reason codes
        self.acked = set()  # mids of completed QoS 1/2 publishes
        self.on_message_hook = None
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a server-side disconnect must show, not be hidden
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        self.c = c
        self.clean_start = clean_start
        self.connect_properties = connect_properties

    # --- callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = (flags.session_present, reason_code, properties)
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.disconnected = (reason_code, properties)
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()
        if self.on_message_hook is not None:
            self.on_message_hook(msg)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = list(reason_codes)
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    # --- used by the checks
    def why_gone(self):
        if self.disconnected is None:
            return ""
        rc, p = self.disconnected
        reason = prop(p, "ReasonString")
        return f" (connection closed: {rc}{', ' + repr(reason) if reason else ''})"

    def wait(self, predicate, what, timeout=WAIT):
        """Waits until predicate() holds (called under the lock); fails after `timeout` or as soon
        as the connection is gone."""
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.disconnected is not None, timeout)
            if ok and predicate():
                return
            if self.disconnected is not None:
                raise CheckFailed(f"{self.id}: no {what}{self.why_gone()}")
            raise CheckFailed(f"{self.id}: no {what} within {timeout:g} s")

    def connect(self):
        try:
            self.c.connect(
                HOST,
                self.port,
                keepalive=30,
                clean_start=self.clean_start,
                properties=self.connect_properties,
            )
        except OSError as e:
            raise CheckFailed(f"{self.id}: cannot connect: {e}") from None
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        session_present, rc, p = self.connack
        if rc.is_failure:
            raise CheckFailed(f"{self.id}: CONNACK {rc}")
        return session_present, p

    def subscribe(self, topic_filter, qos=1):
        rc, mid = self.c.subscribe(topic_filter, qos=qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed(f"{self.id}: subscribe {topic_filter!r}: {mqtt.error_string(rc)}")
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic_filter!r}")
        codes = self.subacks[mid]
        if any(code.is_failure for code in codes):
            raise CheckFailed(f"{self.id}: SUBACK for {topic_filter!r}: {codes[0]}")

    def publish(self, topic, payload, qos=1, properties=None):
        """Publishes and, for QoS 1/2, waits for the acknowledgement."""
        info = self.c.publish(topic, payload, qos=qos, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed(f"{self.id}: publish to {topic!r}: {mqtt.error_string(info.rc)}")
        if qos > 0:
            self.wait(lambda: info.mid in self.acked, f"ack of the PUBLISH to {topic!r}")

    def received(self, topic=None):
        with self.cond:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_message(self, topic, payload, what=None):
        """Waits for the message on `topic` with `payload` (bytes)."""
        self.wait(
            lambda: any(m.topic == topic and m.payload == payload for m in self.messages),
            what or f"message {payload!r} on {topic!r}",
        )

    def close(self):
        try:
            if self.connack is not None and self.disconnected is None:
                self.c.disconnect()
                with self.cond:
                    self.cond.wait_for(lambda: self.disconnected is not None, WAIT)
        finally:
            self.c.loop_stop()


# --- the checks: each gets a `new_client(name, **kw)` that connects and is closed afterwards


def check_shared_subscription(new_client):
    jobs, end = "interop/jobs", "interop/jobs-end"
    members = [new_client("shared-1"), new_client("shared-2")]
    for m in members:
        m.subscribe(f"$share/g/{jobs}", qos=1)
        m.subscribe(end, qos=1)  # not shared: tells each member the jobs are all out
    pub = new_client("shared-pub")
    expected = [f"job-{i}".encode() for i in range(10)]
    for payload in expected:
        pub.publish(jobs, payload, qos=1)
    pub.publish(end, b"end", qos=1)
    for m in members:
        m.wait_message(end, b"end", "end marker after the 10 jobs")
    got = [[msg.payload for msg in m.received(jobs)] for m in members]
    everything = sorted(got[0] + got[1])
    if everything != sorted(expected):
        missing = sorted(set(expected) - set(everything))
        dups = sorted({p for p in everything if everything.count(p) > 1})
        raise CheckFailed(
            f"each of 10 messages once across the group: {len(everything)} received, "
            f"missing {[p.decode() for p in missing]}, duplicated {[p.decode() for p in dups]}"
        )
    counts = [len(g) for g in got]
    if counts != [5, 5]:
        raise CheckFailed(f"round robin should split 10 messages 5/5, got {counts[0]}/{counts[1]}")
    return "10 messages, each once, split 5/5"


def check_user_properties(new_client):
    topic = "interop/userprops"
    sub = new_client("userprops-sub")
    sub.subscribe(topic, qos=1)
    pub = new_client("userprops-pub")
    sent = [("a", "1"), ("b", "2"), ("a", "3")]
    p = props(PacketTypes.PUBLISH, UserProperty=sent, ContentType="application/x-interop")
    pub.publish(topic, b"props", qos=1, properties=p)
    sub.wait_message(topic, b"props")
    msg = sub.received(topic)[0]
    got_up = prop(msg.properties, "UserProperty", [])
    got_ct = prop(msg.properties, "ContentType")
    if list(got_up) != sent:
        raise CheckFailed(f"User Properties: sent {sent}, received {list(got_up)}")
    if got_ct != "application/x-interop":
        raise CheckFailed(f"Content Type: sent 'application/x-interop', received {got_ct!r}")
    return "3 User Properties in order, Content Type kept"


def check_message_expiry(new_client):
    topic = "interop/expiry"
    session = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    sub = new_client("expiry-sub", clean_start=False, connect_properties=session)
    sub.subscribe(topic, qos=1)
    sub.close()
    pub = new_client("expiry-pub")
    for payload, expiry in [(b"short", 1), (b"long", 60)]:
        p = props(PacketTypes.PUBLISH, MessageExpiryInterval=expiry)
        pub.publish(topic, payload, qos=1, properties=p)
    time.sleep(1.5)  # the expiry itself: the 1 s message must be dead when the session resumes
    sub = new_client("expiry-sub", clean_start=False, connect_properties=session)
    if not sub.session_present:
        raise CheckFailed("reconnect with clean_start 0: CONNACK Session Present is 0")
    sub.wait_message(topic, b"long")
    # A marker behind them on the same topic: whatever was queued has arrived once it has.
    pub.publish(topic, b"marker", qos=1)
    sub.wait_message(topic, b"marker")
    got = [m for m in sub.received(topic) if m.payload != b"marker"]
    payloads = [m.payload.decode() for m in got]
    if payloads != ["long"]:
        raise CheckFailed(f"expected only the 60 s message after 1.5 s offline, got {payloads}")
    mei = prop(got[0].properties, "MessageExpiryInterval")
    if mei is None or not 58 <= mei <= 60:
        raise CheckFailed(f"Message Expiry Interval on delivery: expected 58..60, got {mei}")
    return f"1 s message expired, 60 s message delivered with Message Expiry Interval {mei}"


def check_topic_alias(new_client):
    topic = "interop/alias"
    sub = new_client("alias-sub")
    sub.subscribe(topic, qos=1)
    pub = new_client("alias-pub")
    maximum = prop(pub.connack_properties, "TopicAliasMaximum", 0)
    announced = f"server's Topic Alias Maximum {maximum}"
    try:
        pub.publish(topic, b"first", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
        pub.publish("", b"second", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
        sub.wait_message(topic, b"first")
        sub.wait_message(topic, b"second")
    except CheckFailed as e:
        raise CheckFailed(f"{e}; {announced}") from None
    got = [(m.topic, m.payload.decode()) for m in sub.received()]
    if got != [(topic, "first"), (topic, "second")]:
        raise CheckFailed(f"expected both on {topic!r}, got {got}; {announced}")
    return f"alias set then used, both delivered on {topic!r}; {announced}"


def check_request_response(new_client):
    service = "interop/service"
    requester = new_client(
        "requester", connect_properties=props(PacketTypes.CONNECT, RequestResponseInformation=1)
    )
    info = prop(requester.connack_properties, "ResponseInformation")
    expected_info = f"responses/{requester.id}/"
    if info != expected_info:
        raise CheckFailed(f"CONNACK Response Information: expected {expected_info!r}, got {info!r}")
    responder = new_client("responder")

    def answer(msg):
        reply_to = prop(msg.properties, "ResponseTopic")
        if msg.topic != service or not reply_to:
            return
        p = props(PacketTypes.PUBLISH)
        correlation = prop(msg.properties, "CorrelationData")
        if correlation is not None:
            p.CorrelationData = correlation
        # From the network thread: queue it, do not wait for the PUBACK here.
        responder.c.publish(reply_to, b"reply:" + msg.payload, qos=1, properties=p)

    responder.on_message_hook = answer
    responder.subscribe(service, qos=1)
    response_topic = info + "time"
    requester.subscribe(response_topic, qos=1)
    correlation = uuid.uuid4().bytes
    p = props(PacketTypes.PUBLISH, ResponseTopic=response_topic, CorrelationData=correlation)
    requester.publish(service, b"what time is it", qos=1, properties=p)
    requester.wait_message(response_topic, b"reply:what time is it", "response")
    reply = requester.received(response_topic)[0]
    got = prop(reply.properties, "CorrelationData")
    if got != correlation:
        shown = got.hex() if got else None
        raise CheckFailed(f"Correlation Data: sent {correlation.hex()}, got {shown}")
    return f"Response Information {info!r}, response on {response_topic!r} with Correlation Data"


CHECKS = [
    ("mqttv5 shared subscription $share/g/interop/jobs (round robin)", check_shared_subscription),
    ("mqttv5 User Properties and Content Type", check_user_properties),
    ("mqttv5 Message Expiry on a persistent session", check_message_expiry),
    ("mqttv5 Topic Alias from the client", check_topic_alias),
    ("mqttv5 request/response with Response Information", check_request_response),
]


def free_port():
    # Bind port 0, read the port the kernel chose, release it.
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_broker(proc, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            # Not listening yet: retry shortly (the broker gives no other signal of readiness).
            time.sleep(0.1)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    if "--no-build" not in sys.argv[1:] or not os.path.exists(BINARY):
        build = subprocess.run(["cargo", "build", "--release", "--bin", "roost", "--quiet"])
        if build.returncode != 0:
            print("interop: release build failed", file=sys.stderr)
            return 2

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the broker is stopped below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    passed = failed = 0

    def report(ok, name, detail):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {detail}", flush=True)

    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        config = os.path.join(work, "roost.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(port=port))
        log_path = os.path.join(work, "broker.log")
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [BINARY, "--config", config, "--data-dir", os.path.join(work, "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},  # a plain log file
        )
        try:
            if not wait_for_broker(proc, port):
                report(False, f"broker accepts connections on port {port}", "not within 10 s")
            else:
                report(True, f"broker accepts connections on port {port}", "")
                for name, check in CHECKS:
                    clients = []

                    def new_client(cname, **kw):
                        c = Client(cname, port, **kw)
                        clients.append(c)
                        c.session_present, c.connack_properties = c.connect()
                        return c

                    try:
                        report(True, name, check(new_client))
                    except CheckFailed as e:
                        report(False, name, str(e))
                    except Exception as e:  # a bug here or in paho: still one line, go on
                        report(False, name, f"{type(e).__name__}: {e}")
                    finally:
                        for c in clients:
                            try:
                                c.close()
                            except Exception:
                                pass
        finally:
            stop(proc)
            log.close()
        if failed > 0:
            print("--- broker log (last 20 lines)")
            with open(log_path) as f:
                sys.stdout.write("".join(f.readlines()[-20:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interop: interrupted", file=sys.stderr)
        sys.exit(130)
