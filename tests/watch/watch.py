"""Follow a credential's value from wxtoken over server-sent events, with
Python's standard library only. Prints one JSON line per value.

    python3 watch.py BASE_URL ID API_KEY [COUNT] [LAST_EVENT_ID]
"""
import json, sys, urllib.request

base, cred, key = sys.argv[1], sys.argv[2], sys.argv[3]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # 0: forever
req = urllib.request.Request(f"{base}/v1/apps/{cred}/access_token/watch")
req.add_header("Authorization", f"Bearer {key}")
if len(sys.argv) > 5:
    req.add_header("Last-Event-ID", sys.argv[5])  # resume after this generation
event = {}
with urllib.request.urlopen(req) as stream:
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue  # keep-alive
        if line:
            field, _, value = line.partition(":")
            event[field] = value.lstrip(" ")
            continue
        if event.get("event") == "access_token":
            token = json.loads(event["data"])  # {"access_token", "expires_in", "generation", …}
            print(json.dumps({"id": event["id"], **token}), flush=True)
            count -= 1
            if count == 0:
                break
        event = {}
