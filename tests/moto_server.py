"""moto's server, with DynamoDB's requests taken one at a time.

moto runs each request on its own thread, and its TransactWriteItems is not isolated: it checks
and writes item by item, and a cancelled transaction restores a copy of the whole table taken
when it began, undoing whatever other requests wrote meanwhile. Two watchers crediting the same
intent at once could leave a marker that the winning transaction had deleted (CI, 2026-11-28).
DynamoDB itself runs a transaction atomically and cancels the conflicting one; one DynamoDB
request at a time gives the tests that. The other services stay concurrent.

Usage: python tests/moto_server.py -H 127.0.0.1 -p PORT (moto_server's own arguments).
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_one_at_a_time = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _serialised

if __name__ == "__main__":
    sys.exit(main())
