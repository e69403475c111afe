"""
One IMAP session with Python's imaplib, for test/interop/imap-imaplib.test.ts.

Usage: python3 imaplib_session.py '{"port": 993, "tls": "implicit"|"starttls", "user": ..., "password": ...,
                                    "mailbox": "...", "message": "..."}'

Every step goes through imaplib's own methods (which parse and check the server's responses and
raise IMAP4.error / IMAP4.abort on anything they cannot make sense of). What each step returned
is printed as one JSON object on stdout: bytes become latin-1 strings, literals come as
[prefix, literal] pairs, as imaplib hands them over.
"""
import imaplib
import json
import socket
import ssl
import sys
import time
from datetime import datetime, timedelta, timezone

args = json.loads(sys.argv[1])
out = {}


def plain(value):
    """imaplib's data (bytes, tuples of bytes, lists) as JSON-friendly values."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def step(name, result):
    typ, data = result
    out[name] = {"typ": typ, "data": plain(data)}
    return data


socket.setdefaulttimeout(15)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

if args["tls"] == "implicit":
    M = imaplib.IMAP4_SSL("127.0.0.1", args["port"], ssl_context=ctx)
    out["greeting"] = plain(M.welcome)
else:
    M = imaplib.IMAP4("127.0.0.1", args["port"])
    out["greeting"] = plain(M.welcome)
    out["capabilities_before_tls"] = sorted(M.capabilities)
    # LOGIN in cleartext is refused before STARTTLS (LOGINDISABLED, PRIVACYREQUIRED).
    try:
        M.login(args["user"], args["password"])
        out["cleartext_login"] = "accepted"
    except imaplib.IMAP4.error as e:
        out["cleartext_login"] = str(e)
    step("starttls", M.starttls(ssl_context=ctx))
out["tls_version"] = M.sock.version()
out["capabilities"] = sorted(M.capabilities)

step("login", M.login(args["user"], args["password"]))
out["state"] = M.state
step("capability", M.capability())
step("namespace", M.namespace())

mailbox = args["mailbox"]
step("create", M.create(mailbox))
step("list", M.list())
step("list_pattern", M.list('""', mailbox))
step("lsub", M.lsub())

# APPEND with flags and an internal date; the APPENDUID response code is kept by imaplib.
date = imaplib.Time2Internaldate(datetime(2026, 11, 5, 13, 14, 15, tzinfo=timezone(timedelta(hours=1))))
out["date_sent"] = date
message = args["message"].encode("utf-8")
step("append", M.append(mailbox, r"(\Flagged $Label1)", date, message))
out["appenduid"] = plain(M.response("APPENDUID")[1])
step("append2", M.append(mailbox, None, None, b"From: b@example.org\r\nSubject: second\r\n\r\nsecond body\r\n"))
step("append3", M.append(mailbox, r"(\Seen)", None, b"From: c@example.org\r\nSubject: third\r\n\r\nthird body\r\n"))

step("select", M.select(mailbox))
out["select_untagged"] = {
    k: plain(M.response(k)[1]) for k in ["FLAGS", "EXISTS", "RECENT", "UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS", "READ-WRITE", "HIGHESTMODSEQ"]
}

step("fetch_flags", M.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)"))
# imaplib's own INTERNALDATE parser, as seconds since the epoch.
out["internaldate_epoch"] = int(time.mktime(imaplib.Internaldate2tuple(M.fetch("1", "(INTERNALDATE)")[1][0])))
out["parsed_flags"] = [list(plain(imaplib.ParseFlags(item.encode("latin-1")))) for item in out["fetch_flags"]["data"]]
step("fetch_body", M.fetch("1", "(BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
step("fetch_envelope", M.fetch("1", "(ENVELOPE BODYSTRUCTURE)"))

step("search_all", M.search(None, "ALL"))
step("search_unseen", M.search(None, "UNSEEN"))
step("search_subject", M.search(None, "SUBJECT", '"second"'))
step("search_charset", M.search("UTF-8", "BODY", "body"))
step("uid_search", M.uid("SEARCH", None, "FLAGGED"))

step("store", M.store("2", "+FLAGS", r"(\Answered \Deleted)"))
step("store_silent", M.store("1", "-FLAGS.SILENT", r"($Label1)"))
step("fetch_after_store", M.fetch("1:*", "(FLAGS)"))

copy_target = args["mailbox"] + "/Copied"
step("create_target", M.create(copy_target))
step("copy", M.copy("1,3", copy_target))
out["copyuid"] = plain(M.response("COPYUID")[1])
step("uid_copy", M.uid("COPY", "2", copy_target))
out["uid_copyuid"] = plain(M.response("COPYUID")[1])
step("status_target", M.status(copy_target, "(MESSAGES UIDNEXT UNSEEN)"))

step("expunge", M.expunge())
step("search_after_expunge", M.search(None, "ALL"))
step("close", M.close())
step("status_after", M.status(mailbox, "(MESSAGES UNSEEN)"))

step("getquotaroot", M.getquotaroot("INBOX"))
step("rename", M.rename(copy_target, args["mailbox"] + "/Renamed"))
step("delete", M.delete(args["mailbox"] + "/Renamed"))
step("select_missing", M.select("No/Such/Mailbox"))

step("logout", M.logout())
out["state_after"] = M.state
print(json.dumps(out))
