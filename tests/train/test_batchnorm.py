import torch

from histo2st.train._batchnorm import recalibrate_batchnorm


def test_recalibration_gives_the_exact_statistics_and_keeps_modes():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5))
    net.eval()
    data = [torch.randn(10, 4) * 0.01 for _ in range(3)]
    recalibrate_batchnorm(net, net, data)
    with torch.no_grad():
        features = net[0](torch.cat(data))
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, features.mean(0))
    assert bn.momentum == 0.1  # restored
    assert not bn.training  # modes restored
    assert not net[2].training
    # the true variance is tiny: the defaults (variance 1) would have flattened eval features 100-fold
    assert bn.running_var.max() < 1e-3
