"""gRPC peers for the end-to-end tests, on Python's grpcio (nobody on the mesh's side wrote it).

serve PORT: a server of ringmesh.test.Echo on PORT, methods taking and returning raw bytes:
  Unary (echoes with a prefix), ServerStream (three replies), ClientStream (joins the
  requests), Chat (bidirectional: answers each request as it arrives), Fail (aborts with
  UNAVAILABLE and a message), Flaky (UNAVAILABLE on every odd call, else as Unary), Slow (as
  Unary after 3 s), Remaining (the seconds left until the call's deadline, as the server sees
  it, or "none"), Ticks (bidirectional: answers "tick" with four replies 0.4 s apart, anything
  else as Chat), First (client streaming: answers the first request at once, reading no
  more). Prints "listening" once it serves.
call TARGET AUTHORITY: calls each method through TARGET with :authority AUTHORITY and prints
  one line per check, "ok" at the end; exits non-zero on the first surprise. Chat is called
  in lockstep (each request waits for the previous reply), which only full duplex serves.
slow TARGET AUTHORITY SECONDS [METHOD]: a client-streaming call (ClientStream by default)
  whose three requests are SECONDS apart; prints its reply.
big TARGET AUTHORITY SIZE: a unary call with a SIZE-byte message, then a bidirectional one
  whose second message has SIZE bytes (after the first's reply, so the response has started);
  prints each call's status code name and details on a line.
quiet TARGET AUTHORITY: a bidirectional call to Ticks whose client says nothing while the
  server sends its four ticks, then one more request; prints "ok" when every reply came.
status TARGET AUTHORITY [METHOD [DEADLINE]]: calls METHOD (Unary by default) once, with a
  deadline of DEADLINE seconds (10 by default), and prints the call's status code name and
  details on one line (its reply's text instead for OK).
"""
import os
import queue
import sys
from concurrent import futures

# The system's resolver, which reads the hosts file of the test's network namespace (grpc's
# own c-ares resolver does not see it).
os.environ.setdefault("GRPC_DNS_RESOLVER", "native")

import grpc  # noqa: E402

SERVICE = "ringmesh.test.Echo"


def serve(port):
    def unary(request, context):
        return b"echo:" + request

    def server_stream(request, context):
        for i in range(3):
            yield request + b":" + str(i).encode()

    def client_stream(requests, context):
        return b"+".join(requests)

    def chat(requests, context):
        for request in requests:
            yield b"re:" + request

    def fail(request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, "try elsewhere")

    def slow(request, context):
        import time

        time.sleep(3)
        return b"echo:" + request

    def remaining(request, context):
        left = context.time_remaining()
        return b"none" if left is None else f"{left:.3f}".encode()

    def ticks(requests, context):
        import time

        for request in requests:
            if request != b"tick":
                yield b"re:" + request
                continue
            for i in range(4):
                time.sleep(0.4)
                yield f"tick:{i}".encode()

    def first(requests, context):
        return b"first:" + next(requests)

    flaky_calls = [0]

    def flaky(request, context):
        flaky_calls[0] += 1
        if flaky_calls[0] % 2 == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return b"echo:" + request

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Remaining": grpc.unary_unary_rpc_method_handler(remaining),
        "Ticks": grpc.stream_stream_rpc_method_handler(ticks),
        "First": grpc.stream_unary_rpc_method_handler(first),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def expect(what, got, wanted):
    if got != wanted:
        sys.exit(f"{what}: got {got!r}, wanted {wanted!r}")
    print(f"{what}: ok", flush=True)


def lockstep(chat):
    """Sends each request only once the previous one's reply came back."""
    outgoing = queue.Queue()
    replies = chat(iter(outgoing.get, None), timeout=10)
    for word in [b"a", b"b", b"c"]:
        outgoing.put(word)
        expect(f"bidirectional {word.decode()}", next(replies), b"re:" + word)
    outgoing.put(None)
    expect("bidirectional end", list(replies), [])


def call(target, authority):
    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        method = lambda kind, name: getattr(channel, kind)(f"/{SERVICE}/{name}")
        expect("unary", method("unary_unary", "Unary")(b"hi", timeout=10), b"echo:hi")
        replies = list(method("unary_stream", "ServerStream")(b"s", timeout=10))
        expect("server streaming", replies, [b"s:0", b"s:1", b"s:2"])
        joined = method("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        expect("client streaming", joined, b"a+b+c")
        lockstep(method("stream_stream", "Chat"))
        try:
            method("unary_unary", "Fail")(b"x", timeout=10)
            sys.exit("Fail: no error")
        except grpc.RpcError as e:
            expect("status", (e.code(), e.details()), (grpc.StatusCode.UNAVAILABLE, "try elsewhere"))
    print("ok", flush=True)


def status(target, authority, method="Unary", deadline="10"):
    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        unary = channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            print("OK", unary(b"hi", timeout=float(deadline)).decode(), flush=True)
        except grpc.RpcError as e:
            print(e.code().name, e.details(), flush=True)


def big(target, authority, size):
    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            channel.unary_unary(f"/{SERVICE}/Unary")(b"x" * size, timeout=10)
            print("OK", flush=True)
        except grpc.RpcError as e:
            print(e.code().name, e.details(), flush=True)
        outgoing = queue.Queue()
        replies = channel.stream_stream(f"/{SERVICE}/Chat")(iter(outgoing.get, None), timeout=10)
        try:
            outgoing.put(b"a")
            expect("first reply", next(replies), b"re:a")
            outgoing.put(b"y" * size)
            outgoing.put(None)
            list(replies)
            print("OK", flush=True)
        except grpc.RpcError as e:
            print(e.code().name, e.details(), flush=True)


def quiet(target, authority):
    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        outgoing = queue.Queue()
        replies = channel.stream_stream(f"/{SERVICE}/Ticks")(iter(outgoing.get, None), timeout=20)
        outgoing.put(b"tick")
        expect("ticks", [next(replies) for _ in range(4)], [f"tick:{i}".encode() for i in range(4)])
        outgoing.put(b"b")
        expect("after the ticks", next(replies), b"re:b")
        outgoing.put(None)
        expect("end", list(replies), [])
    print("ok", flush=True)


def slow(target, authority, seconds, method="ClientStream"):
    import time

    def requests():
        for word in [b"a", b"b", b"c"]:
            yield word
            time.sleep(seconds)

    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        joined = channel.stream_unary(f"/{SERVICE}/{method}")(requests(), timeout=20)
        print(joined.decode(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "slow":
        slow(sys.argv[2], sys.argv[3], float(sys.argv[4]), *sys.argv[5:6])
    elif sys.argv[1] == "big":
        big(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "quiet":
        quiet(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "status":
        status(*sys.argv[2:6])
    else:
        call(sys.argv[2], sys.argv[3])
