#!/usr/bin/env bash
# Fetch the jars that delta-spark and s3a need on top of pyspark's own (jars/pom.xml) into a
# cache folder, once, and print that folder on stdout.
#
#   jars/fetch.sh [DIR]
#
# DIR defaults to ${FRAMELAKE_CACHE:-$HOME/.cache/framelake}/jars/<first 16 hex of sha256(pom.xml)>,
# so editing the pom fetches into a new folder. A folder that holds the marker .complete is
# taken as done and mvn is not run. The copy goes to a temporary folder beside DIR that is
# renamed into place only once mvn succeeded, so an interrupted fetch leaves no half folder.
# mvn's own output goes to stderr. Needs mvn (Maven >= 3.6.3) and a JDK; about 670 MB, most
# of it the AWS SDK v2 bundle. MVN (default mvn) and MVN_ARGS (e.g. -Dmaven.repo.local=...)
# are passed through.
#
# Use the folder as, e.g.:
#   dir=$(jars/fetch.sh); spark.jars=$(ls "$dir"/*.jar | paste -sd, -)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/pom.xml"
mvn_cmd=${MVN:-mvn}

if [[ $# -gt 1 ]]; then
    echo "usage: $0 [DIR]" >&2
    exit 2
fi

if [[ $# -eq 1 ]]; then
    dir=$1
else
    hash=$(sha256sum "$pom" | cut -c1-16)
    dir="${FRAMELAKE_CACHE:-$HOME/.cache/framelake}/jars/$hash"
fi

if [[ -f "$dir/.complete" ]]; then
    echo "$dir"
    exit 0
fi

if ! command -v "$mvn_cmd" >/dev/null; then
    echo "fetch.sh: $mvn_cmd not found (apt-get install maven)" >&2
    exit 1
fi

parent=$(dirname "$dir")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# shellcheck disable=SC2086
"$mvn_cmd" -B -q -Dstyle.color=never ${MVN_ARGS:-} -f "$pom" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime >&2

if ! compgen -G "$tmp/delta-spark_*.jar" >/dev/null; then
    echo "fetch.sh: mvn copied no delta-spark jar into $tmp" >&2
    exit 1
fi
cp "$pom" "$tmp/.pom.xml"
chmod 755 "$tmp"   # mktemp -d makes it 700
touch "$tmp/.complete"

if [[ -f "$dir/.complete" ]]; then
    : # another fetch finished first; keep its folder
else
    # a leftover folder without the marker is from an older, unfinished layout: replace it
    rm -rf "$dir"
    mv -T "$tmp" "$dir" 2>/dev/null || [[ -f "$dir/.complete" ]]
fi
echo "$dir"
