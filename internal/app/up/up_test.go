package up

import "testing"

func TestDefaultUnitsPerProcess(t *testing.T) {
	tests := []struct{ units, perProcess, processes int }{
		{1, 1, 1},
		{3, 1, 3},
		{4, 1, 4},
		{5, 2, 3},
		{16, 4, 4},
		{100, 25, 4},
		{1000, 125, 8},
		{2000, 125, 16},
		{10000, 625, 16},
	}
	for _, tt := range tests {
		got := DefaultUnitsPerProcess(tt.units)
		processes := (tt.units + got - 1) / got
		if got != tt.perProcess || processes != tt.processes {
			t.Errorf("%d units: %d a process in %d processes, want %d in %d", tt.units, got, processes, tt.perProcess, tt.processes)
		}
	}
}
