"""The HAProxy sync's pure parts: parsing `show servers state`, scaling, and the commands planned."""

from __future__ import annotations

import pytest

from balancer.haproxy import RuntimeApiError, Server, haproxy_weights, parse_servers_state, plan

STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 app 1 s1 127.0.0.1 2 8 100 100 0 1 0 2 0 0 0 0 - 18001 - 0 0 - - 0
3 app 2 s2 127.0.0.1 2 0 7 100 1 1 0 2 0 0 0 0 - 18002 - 0 0 - - 0

"""  # noqa: E501  (HAProxy's own header line)


def test_parse() -> None:
    assert parse_servers_state(STATE) == [Server("s1", "127.0.0.1:18001", 100, 8),
                                          Server("s2", "127.0.0.1:18002", 7, 0)]
    with pytest.raises(RuntimeApiError, match="unexpected answer"):
        parse_servers_state("Can't find backend.\n")


def test_weights_scale_down_only_above_256() -> None:
    assert haproxy_weights({"a": 100, "b": 0}) == {"a": 100, "b": 0}
    assert haproxy_weights({"a": 2048, "b": 1, "c": 0}) == {"a": 256, "b": 1, "c": 0}


def test_plan() -> None:
    servers = [Server("s1", "h:1", 100, 8), Server("s2", "h:2", 100, 0), Server("s3", "h:3", 50, 0),
               Server("s4", "h:4", 100, 1), Server("s5", "h:5", 100, 0)]
    weights = {"h:1": 40, "h:2": 0, "h:3": 50, "h:4": 10}
    assert plan("app", servers, weights) == [
        "set server app/s1 weight 40", "set server app/s1 state ready",  # drained by us: back to ready
        "set server app/s2 state drain",
        "set server app/s4 weight 10",  # in maintenance by hand: weight follows, state is left alone
    ]  # s3 already right; s5 not in the feed: untouched
