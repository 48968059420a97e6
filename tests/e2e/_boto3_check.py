"""boto3 (default settings) against a running hamster: run by boto3_test.ts.

Usage: python3 _boto3_check.py ENDPOINT WORKDIR. Credentials come from the env.
Prints "ok <check>" after each check passes; any failure raises (non-zero exit).
"""
import hashlib
import os
import sys
import urllib.parse

import boto3
import botocore
import botocore.config
from botocore.exceptions import ClientError

endpoint, work = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
bucket = "boto3-bucket"


def ok(name):
    print("ok", name, flush=True)


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected a ClientError")


print("boto3", boto3.__version__, "botocore", botocore.__version__, flush=True)

s3.create_bucket(Bucket=bucket)
assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
ok("create_bucket")

body = os.urandom(200_000)
put = s3.put_object(Bucket=bucket, Key="dir/a.bin", Body=body, Metadata={"k": "v"}, ContentType="application/x-boto")
assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), put["ETag"]
ok("put_object")

got = s3.get_object(Bucket=bucket, Key="dir/a.bin")
assert got["Body"].read() == body
assert got["Metadata"] == {"k": "v"}
ok("get_object")

part = s3.get_object(Bucket=bucket, Key="dir/a.bin", Range="bytes=100-199")
assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
assert part["Body"].read() == body[100:200]
ok("get_object_range")

head = s3.head_object(Bucket=bucket, Key="dir/a.bin")
assert head["ContentLength"] == len(body)
assert head["ContentType"] == "application/x-boto"
assert head["Metadata"] == {"k": "v"}
ok("head_object")

sha = s3.put_object(Bucket=bucket, Key="dir/sha.bin", Body=b"checked", ChecksumAlgorithm="SHA256")
want = __import__("base64").b64encode(hashlib.sha256(b"checked").digest()).decode()
assert sha.get("ChecksumSHA256") == want, sha
g = s3.get_object(Bucket=bucket, Key="dir/sha.bin", ChecksumMode="ENABLED")
assert g["Body"].read() == b"checked"
assert g.get("ChecksumSHA256") == want, g
ok("checksum_sha256")

for i in range(25):
    s3.put_object(Bucket=bucket, Key="many/%02d" % i, Body=b"x" * (i + 1))
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/", PaginationConfig={"PageSize": 7}):
    keys += [c["Key"] for c in page.get("Contents", [])]
assert keys == ["many/%02d" % i for i in range(25)], keys
listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["dir/", "many/"], listed
ok("list_objects_v2")

s3.copy_object(Bucket=bucket, Key="copy.bin", CopySource={"Bucket": bucket, "Key": "dir/a.bin"})
assert s3.get_object(Bucket=bucket, Key="copy.bin")["Body"].read() == body
ok("copy_object")

s3.delete_object(Bucket=bucket, Key="copy.bin")
assert error_code(lambda: s3.head_object(Bucket=bucket, Key="copy.bin")) == ("404", 404)
assert error_code(lambda: s3.get_object(Bucket=bucket, Key="copy.bin")) == ("NoSuchKey", 404)
ok("delete_object")

big = os.path.join(work, "big.bin")
with open(big, "wb") as f:
    for _ in range(20):
        f.write(os.urandom(1024 * 1024))
s3.upload_file(big, bucket, "big.bin")
head = s3.head_object(Bucket=bucket, Key="big.bin")
assert head["ContentLength"] == 20 * 1024 * 1024
assert head["ETag"].endswith('-3"'), head["ETag"]  # 8 MiB parts by default
down = os.path.join(work, "big.down")
s3.download_file(bucket, "big.bin", down)
md5 = lambda p: hashlib.md5(open(p, "rb").read()).hexdigest()
assert md5(big) == md5(down)
ok("upload_file_download_file")

# An empty PUT goes with Expect: 100-continue and Content-Length: 0. The next request on
# that keep-alive connection must be answered: a client with one attempt and a 10 s read
# timeout fails here if the connection was left stuck.
once = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    config=botocore.config.Config(read_timeout=10, retries={"total_max_attempts": 1}),
)
try:
    once.put_object(Bucket=bucket, Key="empty", Body=b"")
    once.put_object(Bucket=bucket, Key="after-empty", Body=b"next")
    assert once.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0
    assert once.get_object(Bucket=bucket, Key="after-empty")["Body"].read() == b"next"
    ok("empty_put_then_next_request")
except Exception as e:  # report and go on: later checks do not depend on this one
    print("FAILED empty_put_then_next_request:", repr(e), flush=True)

# A key with a control character: XML 1.0 cannot carry U+0001, so answers put U+FFFD in
# its place (boto3's expat parser refuses AWS's "&#x1;") and encoding-type=url gives the
# exact key. One attempt each: an unparseable answer must fail here, not be retried.
ctl = "m\x01k"
up = once.create_multipart_upload(Bucket=bucket, Key=ctl)
assert up["Key"] == "m\ufffdk", repr(up["Key"])
listed = once.list_multipart_uploads(Bucket=bucket)
assert [u["UploadId"] for u in listed["Uploads"]] == [up["UploadId"]], listed
encoded = once.list_multipart_uploads(Bucket=bucket, EncodingType="url")
assert encoded["EncodingType"] == "url", encoded
assert [urllib.parse.unquote(u["Key"]) for u in encoded["Uploads"]] == [ctl], encoded
once.abort_multipart_upload(Bucket=bucket, Key=ctl, UploadId=up["UploadId"])
assert "Uploads" not in once.list_multipart_uploads(Bucket=bucket)
once.put_object(Bucket=bucket, Key=ctl, Body=b"ctl")
assert ctl in [c["Key"] for c in once.list_objects_v2(Bucket=bucket)["Contents"]]
once.delete_object(Bucket=bucket, Key=ctl)
ok("control_character_key")

all_keys = [c["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for c in p.get("Contents", [])]
res = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in all_keys]})
assert sorted(d["Key"] for d in res["Deleted"]) == sorted(all_keys)
assert "Errors" not in res
s3.delete_bucket(Bucket=bucket)
assert error_code(lambda: s3.head_bucket(Bucket=bucket)) == ("404", 404)
ok("delete_objects_delete_bucket")
