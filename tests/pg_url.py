"""Prints the PostgreSQL URL given as argument when a server answers there, else nothing."""

import socket
import sys
from urllib.parse import urlsplit

url = sys.argv[1]
parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
try:
    socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2).close()
except OSError:
    sys.exit(0)
print(url)
