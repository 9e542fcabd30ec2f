"""DHCP relay agent (RFC 1542 §4, RFC 2131 §4.1, RFC 3046): sans-I/O policy, asyncio shell, command line."""
