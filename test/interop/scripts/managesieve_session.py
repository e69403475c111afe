"""A ManageSieve client on Python's standard library (socket + ssl), for the interop test.

Speaks RFC 5804 as written: reads the capability greeting, STARTTLS, reads the capabilities
again, AUTHENTICATE "PLAIN" with an initial response, PUTSCRIPT with a non-synchronizing
literal, SETACTIVE, LISTSCRIPTS, GETSCRIPT (a server literal), LOGOUT. Prints one JSON object.
Usage: managesieve_session.py PORT USER PASSWORD NAME SCRIPT_FILE
"""
import base64, json, re, socket, ssl, sys

port, user, password, name, script_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
script = open(script_file, "rb").read()


class Conn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def octets(self, n):
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """Lines (server literals inlined) up to OK/NO/BYE; returns (lines, status line)."""
        lines = []
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                line += b"\r\n" + self.octets(int(m.group(1))) + self.line()
            if re.match(rb"(OK|NO|BYE)\b", line):
                return lines, line.decode()
            lines.append(line)

    def command(self, data):
        self.sock.sendall(data)
        return self.response()


def caps(lines):
    return {m.group(1).decode(): (m.group(2) or b"").decode() for m in (re.match(rb'^"([^"]+)"(?: "([^"]*)")?$', l) for l in lines) if m}


result = {}
plain = socket.create_connection(("127.0.0.1", port))
conn = Conn(plain)
greeting, status = conn.response()
result["greeting"] = caps(greeting)
_, result["starttls"] = conn.command(b"STARTTLS\r\n")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conn = Conn(ctx.wrap_socket(plain))
lines, _ = conn.response()
result["tls_caps"] = caps(lines)
token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
_, result["auth"] = conn.command(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
_, result["put"] = conn.command(f'PUTSCRIPT "{name}" {{{len(script)}+}}\r\n'.encode() + script + b"\r\n")
_, result["setactive"] = conn.command(f'SETACTIVE "{name}"\r\n'.encode())
lines, result["list_status"] = conn.command(b"LISTSCRIPTS\r\n")
result["list"] = [l.decode() for l in lines]
lines, result["get_status"] = conn.command(f'GETSCRIPT "{name}"\r\n'.encode())
literal = lines[0].split(b"\r\n", 1)[1] if lines else b""
result["get"] = literal.decode()
_, result["logout"] = conn.command(b"LOGOUT\r\n")
print(json.dumps(result))
