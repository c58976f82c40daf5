module github.com/skaphos/berth-rs/client/go

go 1.26
