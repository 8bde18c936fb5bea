package repo

import (
	"fmt"
	"strconv"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/storage"
)

// Metadata keys carried by every data object (WAL files and backup parts).
const (
	metaSHA256  = "walsnap-sha256"   // hex SHA-256 of the raw (uncompressed) bytes
	metaRawSize = "walsnap-raw-size" // raw size in bytes
	metaCodec   = "walsnap-codec"    // codec name
)

// ObjectMeta is what every data object records about its content: the
// SHA-256 and size of the raw bytes, and the codec they are stored with.
type ObjectMeta struct {
	SHA256  string // hex
	RawSize int64
	Codec   compress.Codec
}

func (m ObjectMeta) toMap() map[string]string {
	return map[string]string{metaSHA256: m.SHA256, metaRawSize: strconv.FormatInt(m.RawSize, 10), metaCodec: m.Codec.Name()}
}

// objectMeta reads the metadata of a stored data object; the codec comes
// from the key's suffix, which is what the reader must use.
func objectMeta(info storage.ObjectInfo) (ObjectMeta, error) {
	_, codec := compress.FromKey(info.Key)
	m := ObjectMeta{SHA256: info.Metadata[metaSHA256], Codec: codec}
	n, err := strconv.ParseInt(info.Metadata[metaRawSize], 10, 64)
	if err != nil || len(m.SHA256) != 64 || n < 0 {
		return ObjectMeta{}, fmt.Errorf("%s: object has no valid walsnap checksum metadata", info.Key)
	}
	m.RawSize = n
	return m, nil
}
