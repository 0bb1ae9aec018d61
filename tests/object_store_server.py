"""A Google Cloud Storage server on loopback for the tests, reachable by both of the project's
object-store clients: TensorFlow's own gs:// filesystem (tf.io.gfile) and Beam's (FileSystems,
through google-cloud-storage).

The store is gcp-storage-emulator (pure Python, PyPI), which serves GCS's JSON API over plain
HTTP. google-cloud-storage is pointed at it with STORAGE_EMULATOR_HOST. TensorFlow's client has
no endpoint setting (www.googleapis.com and https are compiled in), but its libcurl honours
HTTPS_PROXY and CURL_CA_BUNDLE: so a CONNECT proxy on loopback accepts tunnels to the two GCS
host names only, ends their TLS with a certificate for those names from a test CA made here
(trustme), and pipes the plain bytes to the emulator. Nothing leaves 127.0.0.1: the proxy never
opens a connection anywhere but to the emulator, and refuses every other host.

`python tests/object_store_server.py DIR` runs both in one process (so the test's own process
keeps its CPU) and, once they listen, writes DIR/ports.json ({"api": P, "proxy": Q}) and
DIR/ca.pem; DIR/requests.log gets a line per request. `ObjectStoreServer` starts that process,
waits for it, offers `environ()` for the clients' processes, and stops it.
"""

import json
import logging
import os
import select
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from functools import partial
from http import server

GCS_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
BUCKET = "xlnet-test"
HANDLER_TIMEOUT_S = 30  # a client that opens a connection and never speaks frees the store


def _pipe(a, b):
    """Copies bytes both ways between sockets a and b until either side closes."""
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], HANDLER_TIMEOUT_S)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
                # An SSL socket may hold decrypted bytes that select() does not see.
                while isinstance(s, ssl.SSLSocket) and s.pending():
                    data = s.recv(s.pending())
                    (b if s is a else a).sendall(data)
    except (OSError, ssl.SSLError):
        return


class _TunnelHandler(socketserver.StreamRequestHandler):
    """One CONNECT tunnel to a GCS host name, its TLS ended here, its bytes sent on to the
    emulator."""

    def handle(self):
        self.connection.settimeout(HANDLER_TIMEOUT_S)
        request_line = self.rfile.readline(65536).decode("latin-1").split()
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass
        host = request_line[1].rsplit(":", 1)[0] if len(request_line) == 3 else ""
        if request_line[:1] != ["CONNECT"] or host not in GCS_HOSTS:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        try:
            tls = self.server.tls.wrap_socket(self.connection, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with socket.create_connection(("127.0.0.1", self.server.api_port)) as upstream:
            _pipe(tls, upstream)
        try:
            tls.unwrap()
        except (OSError, ssl.SSLError):
            pass


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _repair_emulator_body_reading(emulator_server):
    """Two defects of gcp-storage-emulator's request bodies, both met with TensorFlow's client
    (libcurl), corrected here in the server process:

    - a body sent with both Transfer-Encoding: chunked and Content-Length (libcurl's PUT of a
      resumable upload's data) is read by Content-Length, so the chunk framing is stored in the
      object; HTTP says the transfer coding wins (RFC 9112 6.3);
    - an empty body is read as None, which fails a zero-byte media upload (the "dir/" marker
      object of tf.io.gfile.makedirs); GCS stores such objects.
    """
    read_raw_data, read_data = emulator_server._read_raw_data, emulator_server._read_data

    def _read_raw_data(request_handler):
        coding = request_handler.headers.get("Transfer-Encoding", "")
        if coding.lower() != "chunked":
            return read_raw_data(request_handler)
        chunks = []
        while True:
            size = int(request_handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request_handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(chunks)
            chunks.append(request_handler.rfile.read(size))
            request_handler.rfile.readline()

    def _read_data(request_handler, query):
        data = read_data(request_handler, query)
        return b"" if data is None and query.get("uploadType") == ["media"] else data

    emulator_server._read_raw_data = _read_raw_data
    emulator_server._read_data = _read_data


def serve(directory):
    """Runs the emulator and the proxy until SIGTERM; writes ports.json and ca.pem."""
    import trustme
    from gcp_storage_emulator import server as emulator_server
    from gcp_storage_emulator.handlers import buckets
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    _repair_emulator_body_reading(emulator_server)
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)  # a line per request
    storage = Storage(use_memory_fs=True)
    buckets.create_bucket(BUCKET, storage)

    class Handler(RequestHandler):
        timeout = HANDLER_TIMEOUT_S

        def parse_request(self):
            # Requests tunnelled for TensorFlow name a GCS host; the emulator builds the links
            # it stores (an object's mediaLink, an upload's session URL) from the Host header,
            # so it is given its own address: links that both clients reach on loopback.
            if not super().parse_request():
                return False
            if self.headers.get("Host", "").split(":")[0] in GCS_HOSTS:
                del self.headers["Host"]
                self.headers["Host"] = "127.0.0.1:%d" % self.server.server_address[1]
            # libcurl asks before sending a body (Expect: 100-continue) and waits a second for
            # the answer, which http.server gives only to HTTP/1.1 servers; GCS answers at once.
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wfile.flush()
            return True

        def log_message(self, format, *args):
            request_log.write("%.3f %s\n" % (time.time(), format % args))

    request_log = open(os.path.join(directory, "requests.log"), "a", buffering=1)
    # One request at a time: the emulator's store is not written for concurrent requests.
    api = server.HTTPServer(("127.0.0.1", 0), partial(Handler, storage))

    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*GCS_HOSTS).configure_cert(tls)
    proxy = _Proxy(("127.0.0.1", 0), _TunnelHandler)
    proxy.tls = tls
    proxy.api_port = api.server_address[1]

    ca.cert_pem.write_to_path(os.path.join(directory, "ca.pem"))
    ports = {"api": api.server_address[1], "proxy": proxy.server_address[1]}
    with open(os.path.join(directory, "ports.json.tmp"), "w") as f:
        json.dump(ports, f)
    os.rename(os.path.join(directory, "ports.json.tmp"), os.path.join(directory, "ports.json"))

    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=api.shutdown).start())
    api.serve_forever()


class ObjectStoreServer:
    """The server process; `with ObjectStoreServer(tmp_dir) as store:` runs it for the block.

    store.url(path) is gs://BUCKET/path; store.environ() the variables that point both
    clients at it (for subprocesses, or monkeypatch.setenv in the test process)."""

    def __init__(self, directory, start_timeout_s=60):
        self.directory = str(directory)
        self.start_timeout_s = start_timeout_s
        self.process = None
        self.ports = None

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        self._log = open(os.path.join(self.directory, "server.log"), "wb")
        self.process = subprocess.Popen([sys.executable, __file__, self.directory],
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        ports_file = os.path.join(self.directory, "ports.json")
        deadline = time.monotonic() + self.start_timeout_s
        while not os.path.exists(ports_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(self.directory, "server.log")) as f:
                    raise RuntimeError(f"object store server did not start:\n{f.read()}")
            time.sleep(0.05)
        with open(ports_file) as f:
            self.ports = json.load(f)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @staticmethod
    def url(path=""):
        return f"gs://{BUCKET}/{path}".rstrip("/") if path else f"gs://{BUCKET}"

    def environ(self):
        """Variables for a client process: TensorFlow through the proxy with the test CA and a
        fixed token (no metadata server asked), google-cloud-storage straight to the emulator
        (anonymous), loopback never proxied, no other proxy."""
        return {
            "HTTPS_PROXY": f"http://127.0.0.1:{self.ports['proxy']}",
            "https_proxy": f"http://127.0.0.1:{self.ports['proxy']}",
            "CURL_CA_BUNDLE": os.path.join(self.directory, "ca.pem"),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
            "NO_GCE_CHECK": "true",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['api']}",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "HTTP_PROXY": "", "http_proxy": "", "ALL_PROXY": "", "all_proxy": "",
            # Beam's google-auth lookup: nothing to find, no metadata server to ask.
            "GOOGLE_APPLICATION_CREDENTIALS": "",
            "GOOGLE_CLOUD_PROJECT": "xlnet-test",
        }


if __name__ == "__main__":
    serve(sys.argv[1])
