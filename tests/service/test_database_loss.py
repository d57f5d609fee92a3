"""A node that loses its PostgreSQL server answers 503, then serves again by itself once the server is back.

The server is reached through a TCP proxy the test cuts: every connection of the node drops at once,
as when the server restarts or the network fails, and new ones are refused until the proxy listens again.
"""

from __future__ import annotations

import socket
import threading
import time

from bandits.storage import connect
from service import create_app
from tests.gunicorn_harness import free_port
from tests.helpers import TEST_POSTGRES, add_catalog, postgres_schema


class Proxy:
    """Forwards 127.0.0.1:``port`` to the test server; ``cut`` drops every connection, ``listen`` takes new ones."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other direction, or cut(), closed it
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self.listener is not None
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone would not
        self.listener.close()
        with self.lock:
            for end in self.sockets:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
            self.sockets.clear()


def rank(client) -> tuple[int, dict]:
    response = client.post("/v1/rank", json={"user": {"id": "u1", "features": {"segment": "family"}}, "slots": 2})
    return response.status_code, response.get_json()


def test_losing_the_server_gives_503s_then_recovery_with_nothing_acknowledged_lost(tmp_path):
    with postgres_schema() as url:
        proxy = Proxy(("127.0.0.1", 5432))
        proxy.listen()
        assert ":5432/" in TEST_POSTGRES
        app = create_app(
            {
                "DATA_DIR": str(tmp_path / "data"),
                "DATABASE_URL": url.replace(":5432/", f":{proxy.port}/", 1),
                "LEARNER": False,
                "REWARD_WAIT_SECONDS": 60.0,
            }
        )
        client = app.test_client()
        add_catalog(client, titles=4)
        acknowledged = []
        for _ in range(5):
            status, body = rank(client)
            assert status == 200, body
            acknowledged.append(body["event_id"])
        first, shown = body["event_id"], body["slots"][0]["title_id"]

        proxy.cut()
        status, body = rank(client)
        assert status == 503 and body["error"]["code"] == "unavailable", body
        reward = client.post(f"/v1/events/{first}/reward", json={"title_id": shown, "value": 1.0})
        assert reward.status_code == 503, reward.get_json()
        health = client.get("/healthz")
        assert health.status_code == 503

        proxy.listen()  # the server is back: the node serves again by itself, nothing restarted
        deadline = time.monotonic() + 20
        while True:
            status, body = rank(client)
            if status == 200:
                acknowledged.append(body["event_id"])
                break
            assert status == 503 and time.monotonic() < deadline, (status, body)
            time.sleep(0.2)
        reward = client.post(f"/v1/events/{first}/reward", json={"title_id": shown, "value": 1.0})
        assert reward.status_code == 201, reward.get_json()
        assert client.get("/healthz").status_code == 200

        db = connect(url)  # straight to the server, past the proxy
        logged = [row[0] for row in db.execute("SELECT id FROM events ORDER BY seq")]
        rewards = db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
        db.close()
        assert logged == acknowledged  # every decision answered with 200, and none of those refused with 503
        assert rewards == 1
        proxy.cut()
