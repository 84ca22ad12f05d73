"""harness.offline: the telemetry switches it sets, and the strace-log reader that proves a run stays on the machine."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

from harness.offline import CI_VARIABLES, disable_telemetry, network_contacts, telemetry_switches

EVERYTHING_OFF = {"CI": "true", "ORT_DISABLE_TELEMETRY": "1", "ORT_TELEMETRY_DISABLED": "1"}

# Lines as strace 6.1 writes them with -f.
EXTERNAL_CONNECT = ('4242 connect(17, {sa_family=AF_INET, sin_port=htons(443), '
                    'sin_addr=inet_addr("93.184.216.34")}, 16) = -1 EINPROGRESS (Operation now in progress)')
EXTERNAL_CONNECT_V6 = ('4242 connect(18, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
                       'inet_pton(AF_INET6, "2606:2800:220:1:248:1893:25c8:1946", &sin6_addr), sin6_scope_id=0}, 28) '
                       '= -1 ENETUNREACH (Network is unreachable)')
DNS_CONNECT = ('4250 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) '
               '= 0')
DNS_SENDTO = ('4250 sendto(9, "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x06mobile"..., '
              '49, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 49')
DNS_TO_LOCAL_STUB = ('4250 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) '
                     '= 0')
DNS_SENDMSG = ('4250 sendmsg(9, {msg_name={sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
               'inet_pton(AF_INET6, "2001:4860:4860::8888", &sin6_addr), sin6_scope_id=0}, msg_namelen=28, '
               'msg_iov=[{iov_base="...", iov_len=33}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 33')
AVAHI = '4250 connect(5, {sa_family=AF_UNIX, sun_path="/run/avahi-daemon/socket"}, 110) = 0'
RESOLVED = '4250 connect(5, {sa_family=AF_UNIX, sun_path="/run/systemd/resolve/io.systemd.Resolve"}, 42) = 0'
UNFINISHED = ('4251 connect(21, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("20.42.73.29")}, 16 '
              '<unfinished ...>')
LOCAL_LINES = (
    '4242 connect(3, {sa_family=AF_UNIX, sun_path="/tmp/pytest-of-root/socket"}, 110) = 0',
    '4242 connect(4, {sa_family=AF_UNIX, sun_path=@"/tmp/.X11-unix/X0"}, 20) = -1 ECONNREFUSED (Connection refused)',
    '4242 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
    '4242 connect(6, {sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), '
    'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
    '4242 connect(7, {sa_family=AF_INET6, sin6_port=htons(5000), sin6_flowinfo=htonl(0), '
    'inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
    '4242 connect(8, {sa_family=AF_UNSPEC, sa_data="\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0"}, 16) = 0',
    '4242 sendto(9, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR, nlmsg_flags=NLM_F_REQUEST|NLM_F_DUMP, nlmsg_seq=1, '
    'nlmsg_pid=0}, {ifa_family=AF_UNSPEC, ...}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20',
    '4242 sendto(10, "ping", 4, 0, NULL, 0) = 4',
    '4242 <... connect resumed>) = 0',
    '4243 +++ exited with 0 +++',
    # nscd is not running: nothing reached it (a host lookup then goes to DNS, on port 53)
    '4244 connect(11, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) '
    '= -1 ENOENT (No such file or directory)',
)
# nscd is running: getpwuid asks it for a user (GETPWBYUID, 1), getaddrinfo for a host (GETAI, 14).
NSCD_CONNECT = '4260 connect(12, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = 0'
NSCD_USER = '4260 sendto(12, "\\2\\0\\0\\0\\1\\0\\0\\0\\2\\0\\0\\0000\\0", 14, MSG_NOSIGNAL, NULL, 0) = 14'
NSCD_HOST = ('4260 sendto(12, "\\2\\0\\0\\0\\16\\0\\0\\0\\37\\0\\0\\0mobile.events.data.microsoft.com\\0", '
             '43, MSG_NOSIGNAL, NULL, 0) = 43')
NSCD_HOST_CACHE = ('4260 writev(12, [{iov_base="\\2\\0\\0\\0\\r\\0\\0\\0\\6\\0\\0\\0", iov_len=12}, '
                   '{iov_base="hosts\\0", iov_len=6}], 2) = 18')


@pytest.mark.parametrize("line", [EXTERNAL_CONNECT, EXTERNAL_CONNECT_V6, DNS_CONNECT, DNS_SENDTO, DNS_TO_LOCAL_STUB,
                                  DNS_SENDMSG, RESOLVED, AVAHI, UNFINISHED],
                         ids=["ipv4-443", "ipv6-443", "dns-connect", "dns-sendto", "dns-local-stub", "dns-sendmsg",
                              "systemd-resolved", "avahi", "unfinished"])
def test_a_contact_with_another_host_or_a_name_service_is_caught(line: str) -> None:
    trace = network_contacts("\n".join([*LOCAL_LINES, line]))
    assert len(trace.contacts) == 1 and trace.contacts[0].endswith(line), trace
    assert trace.calls == 11 - 2 + 1  # the resumed line and the exit line are no calls


@pytest.mark.parametrize("request_line", [NSCD_HOST, NSCD_HOST_CACHE], ids=["getai", "host-cache"])
def test_a_host_request_to_nscd_is_caught(request_line: str) -> None:
    trace = network_contacts("\n".join([NSCD_CONNECT, NSCD_USER, request_line]))
    assert trace.contacts == (f"host name lookup through nscd: {request_line}",)


def test_a_user_request_to_nscd_is_no_contact() -> None:
    assert network_contacts("\n".join([NSCD_CONNECT, NSCD_USER])).contacts == ()


def test_a_request_on_a_reused_descriptor_is_not_taken_for_nscd() -> None:
    reused = '4260 connect(12, {sa_family=AF_UNIX, sun_path="/tmp/other.sock"}, 110) = 0'
    assert network_contacts("\n".join([NSCD_CONNECT, reused, NSCD_HOST])).contacts == ()


def test_an_nscd_connect_strace_shows_in_two_parts_is_followed() -> None:
    unfinished = '4260 connect(12, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110 <unfinished ...>'
    other_thread = '4261 sendto(7, "x", 1, 0, NULL, 0) = 1'
    resumed = '4260 <... connect resumed>) = 0'
    trace = network_contacts("\n".join([unfinished, other_thread, resumed, NSCD_HOST]))
    assert len(trace.contacts) == 1 and trace.calls == 3


def test_what_the_reasons_say() -> None:
    trace = network_contacts("\n".join([EXTERNAL_CONNECT, DNS_SENDTO, RESOLVED]))
    assert [contact.split(": ", 1)[0] for contact in trace.contacts] == [
        "contact with 93.184.216.34:443", "DNS query to 8.8.8.8:53",
        "name lookup through /run/systemd/resolve/io.systemd.Resolve"]


def test_loopback_and_local_sockets_are_no_contact() -> None:
    trace = network_contacts("\n".join(LOCAL_LINES))
    assert trace.contacts == ()
    assert trace.calls == 9


def test_an_empty_log_has_no_calls() -> None:
    assert network_contacts("") == network_contacts("\n\n")
    assert network_contacts("").calls == 0


def test_switches_turn_every_library_off_from_a_clean_environment() -> None:
    assert telemetry_switches({}) == EVERYTHING_OFF


def test_a_user_value_that_keeps_telemetry_off_is_kept() -> None:
    environ = {"GITHUB_ACTIONS": "true", "ORT_DISABLE_TELEMETRY": " Yes ", "ORT_TELEMETRY_DISABLED": "on"}
    assert telemetry_switches(environ) == {}


@pytest.mark.parametrize("value", ["false", "0", "no", "OFF", "", "  "])
def test_a_user_value_that_turns_telemetry_on_is_overridden(value: str) -> None:
    environ = dict.fromkeys(CI_VARIABLES, value) | {"ORT_DISABLE_TELEMETRY": value, "ORT_TELEMETRY_DISABLED": "random"}
    assert telemetry_switches(environ) == EVERYTHING_OFF


def test_disable_telemetry_changes_the_environment_once() -> None:
    environ = {"CI": "false", "HOME": "/root"}
    assert disable_telemetry(environ) == EVERYTHING_OFF
    assert environ == {**EVERYTHING_OFF, "HOME": "/root"}
    assert disable_telemetry(environ) == {}


def test_disable_telemetry_writes_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What native code reads through getenv (monkeypatch restores every variable afterwards)."""
    for name in (*CI_VARIABLES, "ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
        monkeypatch.setenv(name, "0")
    disable_telemetry()
    assert {name: os.environ[name] for name in EVERYTHING_OFF} == EVERYTHING_OFF
    if sys.platform.startswith("linux"):
        getenv = ctypes.CDLL(None).getenv
        getenv.restype = ctypes.c_char_p
        assert getenv(b"ORT_DISABLE_TELEMETRY") == b"1" and getenv(b"CI") == b"true"
