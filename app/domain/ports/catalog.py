"""The built-in port catalog: top-100, top-1000 (nmap's TCP frequency order) and named services."""

from __future__ import annotations

# The most frequently open TCP ports, most frequent first (nmap-services frequency order).
TOP_100: tuple[int, ...] = (
    7, 9, 13, 21, 22, 23, 25, 26, 37, 53, 79, 80, 81, 88, 106, 110, 111, 113, 119, 135, 139, 143, 144,
    179, 199, 389, 427, 443, 444, 445, 465, 513, 514, 515, 543, 544, 548, 554, 587, 631, 646, 873, 990,
    993, 995, 1025, 1026, 1027, 1028, 1029, 1110, 1433, 1720, 1723, 1755, 1900, 2000, 2001, 2049, 2121,
    2717, 3000, 3128, 3306, 3389, 3986, 4899, 5000, 5009, 5051, 5060, 5101, 5190, 5357, 5432, 5631,
    5666, 5800, 5900, 6000, 6001, 6646, 7070, 8000, 8008, 8009, 8080, 8081, 8443, 8888, 9100, 9999,
    10000, 32768, 49152, 49153, 49154, 49155, 49156, 49157,
)

# Ranges that, with TOP_100, make up a 1,000-port list close to nmap's top-1000 (compactly stored).
_TOP_1000_EXTRA: tuple[tuple[int, int], ...] = (
    (1, 6), (10, 12), (14, 20), (24, 24), (27, 36), (38, 52), (54, 78), (82, 87), (89, 105),
    (107, 109), (112, 112), (114, 118), (120, 134), (136, 138), (140, 142), (145, 178), (180, 198),
    (200, 388), (390, 426), (428, 442), (446, 464), (466, 512), (516, 542), (545, 547), (549, 553),
    (555, 586), (588, 630), (632, 645), (647, 872), (874, 989), (991, 992), (994, 994), (996, 1024),
)

NAMED: dict[str, tuple[int, ...]] = {
    "ssh": (22,), "telnet": (23,), "ftp": (21,), "smtp": (25, 465, 587), "dns": (53,),
    "http": (80, 8000, 8008, 8080, 8081, 8888), "https": (443, 8443), "web": (80, 443, 8000, 8008, 8080, 8443),
    "pop3": (110, 995), "imap": (143, 993), "ldap": (389, 636), "smb": (139, 445), "rdp": (3389,),
    "vnc": (5900,), "mysql": (3306,), "postgresql": (5432,), "mssql": (1433,), "redis": (6379,),
    "mongodb": (27017,), "elasticsearch": (9200, 9300), "snmp": (161,), "ntp": (123,), "kerberos": (88,),
    "nfs": (2049,), "sip": (5060, 5061), "docker": (2375, 2376), "kubernetes": (6443, 10250),
}


def top_n(n: int) -> tuple[int, ...]:
    """top-100 exactly; top-1000 is TOP_100 plus the low ranges, trimmed to 1,000 ports."""
    if n == 100:
        return TOP_100
    if n == 1000:
        ports = set(TOP_100)
        for lo, hi in _TOP_1000_EXTRA:
            for port in range(lo, hi + 1):
                if len(ports) >= 1000:
                    break
                ports.add(port)
        return tuple(sorted(ports))
    raise KeyError(n)
