<?php

/*
 * Symfony Messenger's AMQP consumer with its defaults, for bench/amqp_transport.py: the figure
 * our consumer is compared with, measured on the same machine in the same run.
 *
 *   php bench/symfony_amqp_consume.php AMQP-DSN COUNT
 *
 * Sends COUNT messages through Symfony's AMQP transport (not timed), then times Symfony's
 * Worker (what messenger:consume runs: default serializer, the standard worker middleware, a
 * handler that does nothing) receiving, handling and acknowledging all of them. Prints one
 * JSON line: {"messages": COUNT, "seconds": S, "cpu_us": CPU microseconds per message}.
 * Uses Debian's packages (php-symfony-amqp-messenger, php-amqp), no composer.
 */

declare(strict_types=1);

error_reporting(\E_ALL & ~\E_DEPRECATED & ~\E_USER_DEPRECATED);

foreach ([
    'Symfony/Component/Messenger/autoload.php',
    'Symfony/Component/EventDispatcher/autoload.php',
    'Psr/Container/autoload.php',
] as $autoload) {
    require_once '/usr/share/php/'.$autoload;
}

use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\Bridge\Amqp\Transport\AmqpTransportFactory;
use Symfony\Component\Messenger\Envelope;
use Symfony\Component\Messenger\EventListener\StopWorkerOnMessageLimitListener;
use Symfony\Component\Messenger\Handler\HandlersLocator;
use Symfony\Component\Messenger\MessageBus;
use Symfony\Component\Messenger\Middleware\AddBusNameStampMiddleware;
use Symfony\Component\Messenger\Middleware\DispatchAfterCurrentBusMiddleware;
use Symfony\Component\Messenger\Middleware\FailedMessageProcessingMiddleware;
use Symfony\Component\Messenger\Middleware\HandleMessageMiddleware;
use Symfony\Component\Messenger\Middleware\RejectRedeliveredMessageMiddleware;
use Symfony\Component\Messenger\Middleware\SendMessageMiddleware;
use Symfony\Component\Messenger\Transport\Sender\SendersLocator;
use Symfony\Component\Messenger\Transport\Serialization\PhpSerializer;
use Symfony\Component\Messenger\Worker;
use Psr\Container\ContainerInterface;

final class BenchOrderPlaced
{
    public function __construct(public int $id, public string $text)
    {
    }
}

final class NoContainer implements ContainerInterface
{
    public function get(string $id): mixed
    {
        throw new \LogicException("no $id");
    }

    public function has(string $id): bool
    {
        return false;
    }
}

[$script, $dsn, $count] = $argv + [null, null, null];
if (null === $dsn || null === $count) {
    fwrite(\STDERR, "usage: php $script AMQP-DSN COUNT\n");
    exit(2);
}
$count = (int) $count;
$transport = (new AmqpTransportFactory())->createTransport($dsn, [], new PhpSerializer());
$transport->setup();
$text = str_repeat('x', 40);
for ($i = 0; $i < $count; ++$i) {
    $transport->send(new Envelope(new BenchOrderPlaced($i, $text)));
}

$handled = 0;
$handlers = new HandlersLocator([BenchOrderPlaced::class => [static function () use (&$handled): void {
    ++$handled;
}]]);
$dispatcher = new EventDispatcher();
$bus = new MessageBus([
    new AddBusNameStampMiddleware('messenger.bus.default'),
    new RejectRedeliveredMessageMiddleware(),
    new DispatchAfterCurrentBusMiddleware(),
    new FailedMessageProcessingMiddleware(),
    new SendMessageMiddleware(new SendersLocator([], new NoContainer()), $dispatcher),
    new HandleMessageMiddleware($handlers),
]);
$dispatcher->addSubscriber(new StopWorkerOnMessageLimitListener($count));
$worker = new Worker(['bench' => $transport], $bus, $dispatcher);

$cpu = static function (): float {
    $usage = getrusage();

    return $usage['ru_utime.tv_sec'] + $usage['ru_utime.tv_usec'] / 1e6
        + $usage['ru_stime.tv_sec'] + $usage['ru_stime.tv_usec'] / 1e6;
};
$started = hrtime(true);
$cpuStarted = $cpu();
$worker->run();
$seconds = (hrtime(true) - $started) / 1e9;
$cpuUsed = $cpu() - $cpuStarted;
if ($handled !== $count) {
    fwrite(\STDERR, "handled $handled of $count\n");
    exit(1);
}
echo json_encode(['messages' => $count, 'seconds' => $seconds, 'cpu_us' => $cpuUsed / $count * 1e6]), "\n";
