"""The resolver's wire format and name table, and forwarding over loopback."""

from __future__ import annotations

import socket

import trio

from gstacks_agent.networks import dns_message
from gstacks_agent.networks.resolver import NameTable, Resolver, answer_locally


def _table() -> NameTable:
    table = NameTable()
    table.add_network("shop", "10.88.0.1", {"web": "10.88.0.2", "db": "10.88.0.3"})
    table.add_member("10.88.0.2", "shop")
    table.add_member("10.88.0.3", "shop")
    table.add_network("other", "10.88.1.1", {"web": "10.88.1.2"})
    table.add_member("10.88.1.2", "other")
    return table


def test_member_resolves_an_alias_of_its_network():
    query = dns_message.build_query(7, "web.shop.gstacks")
    reply = answer_locally(_table(), "10.88.0.3", query)
    rcode, addresses = dns_message.parse_a_answers(reply)
    assert (rcode, addresses) == (dns_message.RCODE_NOERROR, ["10.88.0.2"])
    assert reply[:2] == query[:2]


def test_names_of_another_network_do_not_exist_for_a_non_member():
    query = dns_message.build_query(8, "web.shop.gstacks")
    reply = answer_locally(_table(), "10.88.1.2", query)
    assert dns_message.parse_a_answers(reply) == (dns_message.RCODE_NXDOMAIN, [])


def test_unknown_alias_is_nxdomain_and_aaaa_is_nodata():
    table = _table()
    missing = answer_locally(
        table, "10.88.0.2", dns_message.build_query(1, "x.shop.gstacks")
    )
    assert dns_message.parse_a_answers(missing)[0] == dns_message.RCODE_NXDOMAIN
    aaaa = dns_message.build_query(2, "web.shop.gstacks", dns_message.TYPE_AAAA)
    assert dns_message.parse_a_answers(answer_locally(table, "10.88.0.2", aaaa)) == (
        0,
        [],
    )


def test_other_names_are_left_for_forwarding_and_garbage_gets_formerr():
    table = _table()
    assert (
        answer_locally(table, "10.88.0.2", dns_message.build_query(3, "example.org"))
        is None
    )
    formerr = answer_locally(table, "10.88.0.2", b"\x00\x05\x01")
    assert formerr is not None and formerr[3] & 0xF == dns_message.RCODE_FORMERR


async def test_names_outside_gstacks_are_forwarded_to_the_upstream():
    upstream = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await upstream.bind(("127.0.0.1", 0))
    resolver = Resolver(upstream.getsockname())
    resolver.table = _table()
    async with trio.open_nursery() as nursery:

        async def fake_upstream() -> None:
            query, client = await upstream.recvfrom(512)
            question = dns_message.parse_question(query)
            await upstream.sendto(
                dns_message.build_answer(query, question, ["192.0.2.7"], 0), client
            )

        nursery.start_soon(fake_upstream)
        served = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await served.bind(("127.0.0.1", 0))
        client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await client.bind(("127.0.0.1", 0))
        with client:
            query = dns_message.build_query(9, "example.org")
            await resolver._forward(served, query, client.getsockname())
            reply = await client.recv(512)
        served.close()
        assert dns_message.parse_a_answers(reply) == (0, ["192.0.2.7"])
    upstream.close()


async def test_silent_upstream_yields_servfail():
    silent = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    resolver = Resolver(silent.getsockname())
    served = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await served.bind(("127.0.0.1", 0))
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await client.bind(("127.0.0.1", 0))
    with client, served, silent:
        await resolver._forward(
            served, dns_message.build_query(4, "x.org"), client.getsockname()
        )
        reply = await client.recv(512)
    assert reply[3] & 0xF == dns_message.RCODE_SERVFAIL


def test_a_sandbox_in_two_networks_resolves_both_from_either_address():
    from gstacks_agent.networks.resolver import NameTable

    table = NameTable()
    table.add_network("one", "10.1.0.1", {"a": "10.1.0.2"})
    table.add_network("two", "10.2.0.1", {"web": "10.2.0.3", "b": "10.2.0.2"})
    table.add_member("10.1.0.2", "one", "sbx_both")
    table.add_member("10.2.0.3", "two", "sbx_web")
    table.add_member("10.2.0.2", "two", "sbx_both")

    # Asking the resolver of its first network, it still sees the second one.
    assert table.lookup("10.1.0.2", "web.two.gstacks", 1).addresses == ("10.2.0.3",)
    assert table.lookup("10.2.0.2", "a.one.gstacks", 1).addresses == ("10.1.0.2",)
    # A sandbox in one network only does not see the other.
    assert table.lookup("10.2.0.3", "a.one.gstacks", 1).addresses == ()
