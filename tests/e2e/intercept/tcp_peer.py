"""TCP peers for the capture tests, written by nobody on the mesh's side.

serve MODE PORT: echo every byte back (MODE echo), or greet first and then echo (MODE banner,
a server-first protocol such as SMTP). Prints "listening" once it accepts.
call MODE HOST PORT: the client side; prints what it got and exits 0 when the peer answered
as MODE says, including the end of stream after the client half-closes.
"""
import socket
import sys
import threading

BANNER = b"220 ringmesh-test ready\r\n"
PAYLOAD = b"\x00\x01 not http \xff\r\n\r\n"


def serve(mode, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    print("listening", flush=True)

    def session(conn):
        with conn:
            if mode == "banner":
                conn.sendall(BANNER)
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=session, args=(conn,), daemon=True).start()


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def call(mode, host, port):
    conn = socket.create_connection((host, port), timeout=5)
    if mode == "banner":
        got = read_exactly(conn, len(BANNER))
        if got != BANNER:
            sys.exit(f"banner: got {got!r}")
    conn.sendall(PAYLOAD)
    echoed = read_exactly(conn, len(PAYLOAD))
    if echoed != PAYLOAD:
        sys.exit(f"echo: got {echoed!r}")
    conn.shutdown(socket.SHUT_WR)
    if conn.recv(1) != b"":
        sys.exit("no end of stream after the half-close")
    print("ok")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        call(sys.argv[2], sys.argv[3], int(sys.argv[4]))
