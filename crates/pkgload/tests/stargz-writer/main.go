// Command stargz-writer turns a tar into an eStargz or a (legacy) zstd:chunked layer with
// the estargz library of containerd's stargz-snapshotter, so that pkgload's lazy reader is
// tested against layers it did not write itself.
//
//	stargz-writer [-format estargz|zstdchunked] [-chunk-size N] [-prioritized a,b] IN.tar OUT
//
// It prints one JSON object: the layer's diff_id and the annotations its descriptor needs.
// The tests build it from Debian's golang-github-containerd-stargz-snapshotter-dev in GOPATH
// mode (GO111MODULE=off GOPATH=/usr/share/gocode): nothing is fetched.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
)

func main() {
	format := flag.String("format", "estargz", "estargz or zstdchunked")
	chunkSize := flag.Int("chunk-size", 1<<20, "largest chunk of a regular file, in bytes")
	prioritized := flag.String("prioritized", "", "comma-separated files to place first")
	flag.Parse()
	if flag.NArg() != 2 {
		fail(fmt.Errorf("usage: stargz-writer [flags] IN.tar OUT"))
	}
	if err := convert(*format, *chunkSize, *prioritized, flag.Arg(0), flag.Arg(1)); err != nil {
		fail(err)
	}
}

func convert(format string, chunkSize int, prioritized, in, out string) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}

	annotations := map[string]string{}
	options := []estargz.Option{estargz.WithChunkSize(chunkSize)}
	if prioritized != "" {
		options = append(options, estargz.WithPrioritizedFiles(strings.Split(prioritized, ",")))
	}
	switch format {
	case "estargz":
	case "zstdchunked":
		// The compressor fills `annotations` with the manifest checksum and position.
		compressor := &zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault, Metadata: annotations}
		options = append(options, estargz.WithCompression(zstdChunked{compressor, &zstdchunked.Decompressor{}}))
	default:
		return fmt.Errorf("unknown format %q", format)
	}

	blob, err := estargz.Build(io.NewSectionReader(src, 0, info.Size()), options...)
	if err != nil {
		return err
	}
	defer blob.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, blob); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if format == "estargz" {
		annotations[estargz.TOCJSONDigestAnnotation] = blob.TOCDigest().String()
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"diff_id":     blob.DiffID().String(),
		"annotations": annotations,
	})
}

// zstdChunked is the library's zstd:chunked compressor and decompressor as one Compression.
type zstdChunked struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stargz-writer:", err)
	os.Exit(1)
}
