"""Client addresses behind a reverse proxy (``--trusted-proxies``).

Behind nginx or an ingress controller every socket parkchat accepts comes
from the proxy, so per-address limits, failed-login throttling and the access
log would see one address for everyone. The proxy says who the client is in
``X-Forwarded-For``, but any client can send that header too, so it is only
believed when the socket's peer is a proxy the operator named.

The resolution is the one nginx's ``real_ip_recursive on`` uses: walk the
header from the right (the hop nearest to us) past every trusted proxy; the
first address that is not a trusted proxy is the client. Anything unreadable
on the way stops the walk at the last hop we could trust, so a forged or
garbled header never yields an address the proxy did not add.

A connection that still resolves to a trusted proxy (the proxy's own health
checks, plain-TCP clients through a stream proxy) stands for many clients and
is not limited per address; see ``ConnectionHandler`` and ``AddressLimit``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The most X-Forwarded-For hops read: a chain longer than any real proxy
#: setup is cut here (from the right) rather than parsed in full.
MAX_HOPS = 16


def parse_network(text: str) -> str:
    """One ``--trusted-proxies`` entry (an address or a CIDR network), in its
    normal form; ``ValueError`` with a message for anything else."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"expected an IP address or network such as 10.0.0.0/8, got {text!r}"
        ) from None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client seen through a dual-stack socket (::ffff:192.0.2.1).
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed; empty = none."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(parse_network(n)) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (a peer address as text) is a trusted proxy."""
        if not self.networks:
            return False
        address = _address(host)
        return address is not None and any(address in n for n in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address for a connection from ``peer`` carrying
        ``forwarded_for`` (the X-Forwarded-For values joined with commas,
        or None)."""
        if forwarded_for is None or not self.trusts(peer):
            return peer
        hops = forwarded_for.split(",")[-MAX_HOPS:]
        client = peer
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # unreadable: nothing left of it can be trusted
            client = str(address)
            if not self.trusts(client):
                break
        return client
