"""Drives boto3 (Debian's python3-boto3) for boto3_test.ts.

Usage: python3 _boto3_driver.py SCENARIO, with HAMSTER_ENDPOINT, HAMSTER_BUCKET and
HAMSTER_WORK in the environment and the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY. Prints one JSON object of observations; the Deno test asserts
on them. Every client uses boto3's defaults except the endpoint (and, where named,
the presigning signature version).
"""

import hashlib
import json
import os
import sys
import zlib
import base64

import boto3
from botocore.config import Config

ENDPOINT = os.environ["HAMSTER_ENDPOINT"]
BUCKET = os.environ["HAMSTER_BUCKET"]
WORK = os.environ["HAMSTER_WORK"]


def client(**config):
    return boto3.session.Session().client(
        "s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=Config(**config) if config else None
    )


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def crc32_b64(data):
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


def transfer():
    """put/get with CRC32, upload_file/download_file (multipart), listing."""
    s3 = client()
    sent = []
    s3.meta.events.register(
        "before-send.s3.*",
        lambda request, **_: sent.append({"url": request.url, "headers": {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}}),
    )
    out = {"boto3": boto3.__version__}
    s3.create_bucket(Bucket=BUCKET)

    small = os.urandom(300_001)
    put = s3.put_object(Bucket=BUCKET, Key="small.bin", Body=small, ChecksumAlgorithm="CRC32")
    out["put"] = {
        "etag": put["ETag"],
        "checksumCRC32": put.get("ChecksumCRC32"),
        "sentChecksum": sent[-1]["headers"].get("x-amz-checksum-crc32"),
        "wantChecksum": crc32_b64(small),
        "md5": hashlib.md5(small).hexdigest(),
    }
    got = s3.get_object(Bucket=BUCKET, Key="small.bin", ChecksumMode="ENABLED")
    body = got["Body"].read()  # botocore validates the CRC32 while reading
    out["get"] = {"checksumCRC32": got.get("ChecksumCRC32"), "md5": hashlib.md5(body).hexdigest(), "length": len(body)}

    big = os.path.join(WORK, "big.bin")
    s3.upload_file(big, BUCKET, "big/default.bin")
    s3.upload_file(big, BUCKET, "big/crc32.bin", ExtraArgs={"ChecksumAlgorithm": "CRC32"})
    out["heads"] = {}
    for key in ["big/default.bin", "big/crc32.bin"]:
        h = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        out["heads"][key] = {"etag": h["ETag"], "length": h["ContentLength"], "checksumCRC32": h.get("ChecksumCRC32")}
    out["partChecksums"] = [
        s.get("headers", {}).get("x-amz-checksum-crc32") for s in sent if "partNumber=" in s["url"] and "crc32.bin" in s["url"]
    ]
    s3.download_file(BUCKET, "big/default.bin", os.path.join(WORK, "default.down"))
    s3.download_file(BUCKET, "big/crc32.bin", os.path.join(WORK, "crc32.down"), ExtraArgs={"ChecksumMode": "ENABLED"})
    out["downloads"] = {
        "big/default.bin": md5_file(os.path.join(WORK, "default.down")),
        "big/crc32.bin": md5_file(os.path.join(WORK, "crc32.down")),
    }
    os.remove(os.path.join(WORK, "default.down"))
    os.remove(os.path.join(WORK, "crc32.down"))
    listing = s3.list_objects_v2(Bucket=BUCKET)
    out["listing"] = [[o["Key"], o["Size"]] for o in listing.get("Contents", [])]
    return out


def presign():
    """Presigned URLs for GET, PUT, HEAD and DELETE: SigV4 (s3v4) and boto3's default."""
    s3 = client()
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="dir/obj.bin", Body=open(os.path.join(WORK, "obj.bin"), "rb").read())
    v4 = client(signature_version="s3v4")
    obj = {"Bucket": BUCKET, "Key": "dir/obj.bin"}
    put = {"Bucket": BUCKET, "Key": "dir/put.bin"}
    return {
        "v4": {
            "get": v4.generate_presigned_url("get_object", Params=obj, ExpiresIn=300),
            "put": v4.generate_presigned_url("put_object", Params=put, ExpiresIn=300),
            "head": v4.generate_presigned_url("head_object", Params=obj, ExpiresIn=300),
            "delete": v4.generate_presigned_url("delete_object", Params=obj, ExpiresIn=300),
            "getExpiring": v4.generate_presigned_url("get_object", Params=obj, ExpiresIn=1),
        },
        # boto3's default presigning for S3 in us-east-1 (still in 2026) is SigV2 query auth.
        "default": {
            "get": s3.generate_presigned_url("get_object", Params=obj, ExpiresIn=300),
            "put": s3.generate_presigned_url("put_object", Params=put, ExpiresIn=300),
        },
    }


def presign_hosts():
    """SigV2 (and SigV4) presigned URLs under a virtual-host domain, in both addressing styles.

    Puts alpha/secret, beta/secret and beta/alpha/secret through HAMSTER_ENDPOINT (path
    style, outside the domain); the URLs are made for HAMSTER_DOMAIN_ENDPOINT
    (http://s3.localhost:PORT), which does not resolve everywhere: the test sends them.
    """
    s3 = client()
    for bucket, key in [("alpha", "secret"), ("beta", "secret"), ("beta", "alpha/secret")]:
        if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=f"{bucket}/{key}".encode())

    def presigner(style, version):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=os.environ["HAMSTER_DOMAIN_ENDPOINT"],
            region_name="us-east-1",
            config=Config(signature_version=version, s3={"addressing_style": style}),
        )

    out = {}
    for style in ["path", "virtual"]:
        v2 = presigner(style, "s3")
        v4 = presigner(style, "s3v4")
        out[style] = {
            "get": v2.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "secret"}, ExpiresIn=300),
            "put": v2.generate_presigned_url("put_object", Params={"Bucket": "alpha", "Key": f"upload-{style}"}, ExpiresIn=300),
            "list": v2.generate_presigned_url("list_objects", Params={"Bucket": "alpha"}, ExpiresIn=300),
            "week": v2.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "secret"}, ExpiresIn=604800),
            "eightDays": v2.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "secret"}, ExpiresIn=8 * 86400),
            "v4get": v4.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "secret"}, ExpiresIn=300),
        }
    return out


if __name__ == "__main__":
    print(json.dumps({"transfer": transfer, "presign": presign, "presign_hosts": presign_hosts}[sys.argv[1]]()))
