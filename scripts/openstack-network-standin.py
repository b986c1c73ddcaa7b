"""The one stand-in of the OpenStack tier (scripts/openstack.sh): servers have no network, but
nova still lists ports and networks on rescue, unrescue and delete. This answers those two
listing calls with empty lists, as nova's own functional tests stub them, and nothing else
(every other request is a 404, logged, so a new call nova makes shows up).

Usage: python3 openstack-network-standin.py HOST PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTINGS = {"/v2.0/ports": "ports", "/v2.0/networks": "networks"}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith(".json"):
            path = path[: -len(".json")]
        key = LISTINGS.get(path)
        if key is None and path == "":
            body = {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]}
        elif key is None:
            self.send_error(404, "not part of the stand-in")
            return
        else:
            body = {key: []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
