"""OCI distribution spec, "Content discovery": tag listing with `n` and `last`, the
referrers API, and the catalog."""

import json

from .oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    codes,
    descriptor,
    digest_of,
    push_blob,
    push_image,
    push_manifest,
)

ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


async def test_tags_are_listed_sorted(client):
    for tag in ("v2", "latest", "v1"):
        await push_image(client, "lab/app", tag)
    response = await client.get("/v2/lab/app/tags/list")
    assert response.json() == {"name": "lab/app", "tags": ["latest", "v1", "v2"]}


async def test_tags_are_paginated_with_n_last_and_link(client):
    for tag in ("a", "b", "c", "d"):
        await push_image(client, "lab/app", tag)

    first = await client.get("/v2/lab/app/tags/list", params={"n": 2})
    assert first.json()["tags"] == ["a", "b"]
    link = first.headers["Link"]
    assert link.endswith('; rel="next"')
    following = link[1 : link.index(">")]
    second = await client.get(following)
    assert second.json()["tags"] == ["c", "d"]
    assert "Link" not in second.headers

    after = await client.get("/v2/lab/app/tags/list", params={"n": 5, "last": "b"})
    assert after.json()["tags"] == ["c", "d"]
    none = await client.get("/v2/lab/app/tags/list", params={"n": 0})
    assert none.json()["tags"] == []


async def test_bad_page_size_is_pagination_number_invalid(client):
    await push_image(client, "lab/app", "v1")
    response = await client.get("/v2/lab/app/tags/list", params={"n": "-1"})
    assert (response.status_code, codes(response)) == (
        400,
        ["PAGINATION_NUMBER_INVALID"],
    )


async def test_tags_of_an_unknown_repository_are_name_unknown(client):
    response = await client.get("/v2/lab/none/tags/list")
    assert (response.status_code, codes(response)) == (404, ["NAME_UNKNOWN"])


async def push_referrer(client, subject_body, annotation):
    empty = await push_blob(client, "lab/app", b"{}")
    layer = await push_blob(client, "lab/app", annotation.encode())
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
            "layers": [
                {"mediaType": "text/plain", "digest": layer, "size": len(annotation)}
            ],
            "subject": descriptor(OCI_MANIFEST, subject_body),
            "annotations": {"org.example.note": annotation},
        }
    ).encode()
    response = await push_manifest(client, "lab/app", digest_of(body), body)
    return body, response


async def test_referrers_list_the_manifests_whose_subject_is_the_digest(client):
    image = await push_image(client, "lab/app", "v1")
    other = await push_image(client, "lab/app", "v2", layers=(b"other",))
    referrer, pushed = await push_referrer(client, image, "sbom")
    await push_referrer(client, other, "not this one")

    response = await client.get(f"/v2/lab/app/referrers/{digest_of(image)}")

    assert pushed.headers["OCI-Subject"] == digest_of(image)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OCI_INDEX
    index = response.json()
    assert (index["schemaVersion"], index["mediaType"]) == (2, OCI_INDEX)
    assert index["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(referrer),
            "size": len(referrer),
            "artifactType": ARTIFACT_TYPE,
            "annotations": {"org.example.note": "sbom"},
        }
    ]


async def test_referrers_filtered_by_artifact_type(client):
    image = await push_image(client, "lab/app", "v1")
    await push_referrer(client, image, "sbom")
    matching = await client.get(
        f"/v2/lab/app/referrers/{digest_of(image)}",
        params={"artifactType": ARTIFACT_TYPE},
    )
    other = await client.get(
        f"/v2/lab/app/referrers/{digest_of(image)}", params={"artifactType": "x/y"}
    )
    assert matching.headers["OCI-Filters-Applied"] == "artifactType"
    assert len(matching.json()["manifests"]) == 1
    assert other.json()["manifests"] == []


async def test_referrers_of_an_unknown_digest_are_an_empty_index(client):
    response = await client.get(f"/v2/lab/app/referrers/{digest_of(b'nothing')}")
    assert response.status_code == 200
    assert response.json()["manifests"] == []


async def test_catalog_lists_repositories_with_pagination(client):
    for name in ("lab/b", "lab/a", "team/c"):
        await push_image(client, name, "v1")
    everything = await client.get("/v2/_catalog")
    page = await client.get("/v2/_catalog", params={"n": 2})
    rest = await client.get("/v2/_catalog", params={"n": 2, "last": "lab/b"})
    assert everything.json() == {"repositories": ["lab/a", "lab/b", "team/c"]}
    assert page.json()["repositories"] == ["lab/a", "lab/b"]
    assert 'rel="next"' in page.headers["Link"]
    assert rest.json()["repositories"] == ["team/c"]


async def test_catalog_needs_more_than_a_repository_credential(guarded):
    secret = guarded.credential("lab/app", "push")
    response = await guarded.client.get(
        "/v2/_catalog", headers={"Authorization": f"Bearer {secret}"}
    )
    admin = await guarded.client.get(
        "/v2/_catalog", headers={"Authorization": f"Bearer {guarded.api_key}"}
    )
    assert (response.status_code, codes(response)) == (403, ["DENIED"])
    assert admin.status_code == 200
