#!/usr/bin/env python3
"""Crafted packets for the firewall tests: frames the kernel would never route itself.

    packets.py send IFACE DST_MAC SRC_IP DST_IP SPORT DPORT FLAGS
        Send one IPv4 TCP segment (FLAGS: S for a SYN, A for an ACK with a few bytes of
        data) in an Ethernet frame out of IFACE to DST_MAC, from IFACE's own MAC.
    packets.py sniff IFACE SECONDS PORT
        For SECONDS, print one line "SRC:SPORT > DST:DPORT FLAGS" for every IPv4 TCP
        segment seen on IFACE (either direction) whose source or destination port is PORT.
        Prints "ready" once capturing.
"""
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_of(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def segment(src: str, dst: str, sport: int, dport: int, flags: str) -> bytes:
    bits = {"S": 0x02, "A": 0x10}
    flag_bits = sum(bits[f] for f in flags)
    payload = b"hello" if "A" in flags else b""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 1 if "A" in flags else 0, 5 << 4, flag_bits, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def send(iface, dst_mac, src, dst, sport, dport, flags):
    frame = bytes.fromhex(dst_mac.replace(":", "")) + mac_of(iface) + struct.pack("!H", ETH_P_IP)
    frame += segment(src, dst, int(sport), int(dport), flags)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for _ in range(3):
        s.send(frame)
        time.sleep(0.05)


def sniff(iface, seconds, port):
    port = int(port)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(0.1)
    print("ready", flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        if len(frame) < 54 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
            continue
        ip = frame[14:]
        if ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if port not in (sport, dport):
            continue
        flags = ip[ihl + 13]
        names = "".join(n for b, n in [(0x02, "S"), (0x10, "A"), (0x04, "R"), (0x01, "F")] if flags & b)
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        print(f"{src}:{sport} > {dst}:{dport} {names}", flush=True)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"send": send, "sniff": sniff}[command](*args)
