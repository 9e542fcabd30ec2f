"""`make bench`: ztp side by side with Kea, dnsmasq and tftpd-hpa, in network namespaces (issue 6).

Run ``python -m bench.run`` as root (``--quick`` for a short smoke run). Every server and client runs in
namespaces built by :class:`ztp.lab.Lab`; results go to ``bench/results/<date>.json`` and a PNG chart.
"""
