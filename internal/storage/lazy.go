package storage

import (
	"context"
	"io"
	"sync"
)

// Lazy returns a Store named name that opens the real store on its first
// call. Commands that may finish without touching the store (wal-fetch
// serving a prefetched file) then skip the connection setup. A failure to
// open is returned by every call.
func Lazy(name string, open func(ctx context.Context) (Store, error)) Store {
	return &lazy{name: name, open: open}
}

type lazy struct {
	name string
	open func(ctx context.Context) (Store, error)
	once sync.Once
	st   Store
	err  error
}

func (l *lazy) get(ctx context.Context) (Store, error) {
	l.once.Do(func() { l.st, l.err = l.open(ctx) })
	return l.st, l.err
}

func (l *lazy) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.PutIfAbsent(ctx, key, r, size, meta)
}

func (l *lazy) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return st.Get(ctx, key)
}

func (l *lazy) Head(ctx context.Context, key string) (ObjectInfo, error) {
	st, err := l.get(ctx)
	if err != nil {
		return ObjectInfo{}, err
	}
	return st.Head(ctx, key)
}

func (l *lazy) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.List(ctx, prefix)
}

func (l *lazy) Delete(ctx context.Context, key string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.Delete(ctx, key)
}

func (l *lazy) DeleteMany(ctx context.Context, keys []string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.DeleteMany(ctx, keys)
}

func (l *lazy) String() string { return l.name }
